"""NN204 and NN701-NN707 on healthy models: quiet on every healthy zoo copy (tests/zoo: ResNet, VGG,
GPT-2, BERT, Llama, ConvNeXt, MobileNetV3, EfficientNet, DenseNet, LSTM, GRU) and on tiny Hugging Face
models at their own init, with the causal language models among them recognised and checked. Infos
are allowed (a healthy architecture may carry a wasted bias, NN707); warnings and errors are not.
"""
from __future__ import annotations

import pytest
import torch

import nnlint

CODES = ["NN204", "NN701", "NN702", "NN703", "NN704", "NN705", "NN706", "NN707"]


def loud(report):
    return [(d.code, d.module, d.message) for d in report.diagnostics if d.severity != "info"]


def zoo_cases(kind):
    try:
        import zoo
    except ImportError:
        return []
    return [pytest.param(make, id=make.__name__) for make in getattr(zoo, kind)]


@pytest.mark.parametrize("make", zoo_cases("HEALTHY"))
def test_zoo_healthy_models_are_quiet(make):
    case = make()
    report = nnlint.check(case.model, case.batch, select=CODES, optimizer=case.optimizer, loss_fn=case.loss_fn,
                          target=case.target)
    assert loud(report) == []
    assert report.trace.probes["batch_mixing"].tested and report.trace.probes["ignored_input"].tested


def test_zoo_causal_language_models_are_recognised_and_checked():
    import zoo.transformer as t

    for make in (t.gpt2, t.llama):
        case = make()
        probe = nnlint.check(case.model, case.batch, select=["NN703"]).trace.probes["causal_leak"]
        assert probe.causal and probe.tested and probe.change == 0.0
    bert = t.bert()
    assert not nnlint.check(bert.model, bert.batch, select=["NN703"]).trace.probes["causal_leak"].causal


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "t5"])
def test_hugging_face_models_are_quiet_and_causal_ones_recognised(name, transformers):
    configs = {
        "bert": lambda: transformers.BertForSequenceClassification(transformers.BertConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, num_labels=3,
            vocab_size=1000)),
        "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_embd=64, n_layer=2, n_head=2, vocab_size=1000, n_positions=64)),
        "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
            hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, vocab_size=1000)),
        "t5": lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
            vocab_size=1000, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16)),
    }
    torch.manual_seed(0)
    model = configs[name]()
    ids = torch.randint(0, 1000, (2, 32), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[0, 20:] = 0                                   # one padded sequence: the mask must be found read
    batch = {"input_ids": ids, "attention_mask": mask, **({"decoder_input_ids": ids} if name == "t5" else {})}
    report = nnlint.check(model, batch, select=CODES)
    assert loud(report) == []
    probe = report.trace.probes["causal_leak"]
    assert probe.causal is (name in ("gpt2", "llama"))
    assert not probe.causal or (probe.tested and probe.change == 0.0)
