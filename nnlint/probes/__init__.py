"""Probes: what the one instrumented step cannot show, measured with a few more runs of the model (see
nnlint.probes.base). One module per probe; importing nnlint.probes.base.all_probes registers them."""
