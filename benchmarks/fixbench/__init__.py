"""The benchmark that decides whether `nnlint fix` rescues training (benchmarks/fix_training.py).

tasks.py      the two tasks (digits; a synthetic XOR-like task where a broken model sits at chance)
mutations.py  the planted faults, each written as plain torch in a generated model's source
models.py     the generated family of small MLPs and CNNs (source files, their batch, their naive fix)
arms.py       the arms one model is trained in: before, fix, fix --unsafe, the naive hand fix, the source fix
train.py      training at a learning-rate grid over seeds, and the per-model comparison
diagnose.py   where a fixed arm loses: dead units, findings left, alternatives tried by hand
report.py     the tables, the aggregates and the loss list
summary.py    the done-means verdict and the README tables (per fault, per model with what the fixer did)
"""
