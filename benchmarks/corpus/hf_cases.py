"""Hugging Face transformers: 50+ architectures at tiny configs, built from their config classes.

Nothing is downloaded: no `from_pretrained`, no hub (zoo.py sets HF_HUB_OFFLINE). Each entry names
the config and model classes, the config's tiny sizes, and the kind of batch the model takes:
- "text": token ids with an attention mask (the last sample right-padded),
- "seq2seq": the same plus decoder input ids,
- "image": standardized pixel values; "clip": text and image together,
- "waveform": standardized raw audio (Wav2Vec2 family); "mel": log-mel features (Whisper and
  Speech2Text, with decoder ids); "spectrogram": AST's (time, mel) patches.
The models are in training mode as built (from_config-style construction), at each architecture's
own `_init_weights`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
import transformers

from corpus import Case, inputs, seeded

VOCAB = 256
TEXT_LEN = 16
DECODER_LEN = 8
IMAGE = 32

# Tiny sizes shared by most text models; each entry adds or overrides its own names for them.
LLAMA_LIKE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1,
                  eos_token_id=2)
BERT_LIKE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=64)
BART_LIKE = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)
T5_LIKE = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=0)
VIT_LIKE = dict(image_size=IMAGE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64)
WAV2VEC_LIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    conv_dim=(32, 32, 32), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
                    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=32)


@dataclass(frozen=True)
class Spec:
    name: str
    family: str          # decoder | encoder | encoder-decoder | vision | speech | multimodal | moe | ssm
    config: str          # transformers config class
    model: str           # transformers model class
    kwargs: dict = field(default_factory=dict)
    batch: str = "text"
    note: str = ""
    size: int = IMAGE    # image side for "image" batches
    labels: str = ""     # "lm" | "mlm" | "class" | "seq2seq" | "ctc": the batch carries labels, outputs.loss is the loss


SPECS = [
    # decoder-only
    Spec("gpt2", "decoder", "GPT2Config", "GPT2LMHeadModel",
         dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2),
         note="HF Conv1D layers"),
    Spec("gpt_neo", "decoder", "GPTNeoConfig", "GPTNeoForCausalLM",
         dict(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
              max_position_embeddings=64, window_size=8)),
    Spec("gptj", "decoder", "GPTJConfig", "GPTJForCausalLM",
         dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64)),
    Spec("gpt_neox", "decoder", "GPTNeoXConfig", "GPTNeoXForCausalLM",
         dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=64)),
    Spec("llama", "decoder", "LlamaConfig", "LlamaForCausalLM", LLAMA_LIKE),
    Spec("mistral", "decoder", "MistralConfig", "MistralForCausalLM", LLAMA_LIKE),
    Spec("qwen2", "decoder", "Qwen2Config", "Qwen2ForCausalLM", LLAMA_LIKE),
    Spec("qwen3", "decoder", "Qwen3Config", "Qwen3ForCausalLM", dict(LLAMA_LIKE, head_dim=8)),
    Spec("gemma", "decoder", "GemmaConfig", "GemmaForCausalLM", dict(LLAMA_LIKE, head_dim=8)),
    Spec("gemma2", "decoder", "Gemma2Config", "Gemma2ForCausalLM", dict(LLAMA_LIKE, head_dim=8, sliding_window=8)),
    Spec("phi", "decoder", "PhiConfig", "PhiForCausalLM", dict(LLAMA_LIKE)),
    Spec("phi3", "decoder", "Phi3Config", "Phi3ForCausalLM", dict(LLAMA_LIKE, pad_token_id=0)),
    Spec("falcon", "decoder", "FalconConfig", "FalconForCausalLM",
         dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)),
    Spec("opt", "decoder", "OPTConfig", "OPTForCausalLM",
         dict(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=64, word_embed_proj_dim=32)),
    Spec("bloom", "decoder", "BloomConfig", "BloomForCausalLM",
         dict(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4)),
    Spec("codegen", "decoder", "CodeGenConfig", "CodeGenForCausalLM",
         dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64, n_ctx=64)),
    Spec("stablelm", "decoder", "StableLmConfig", "StableLmForCausalLM", LLAMA_LIKE),
    Spec("olmo2", "decoder", "Olmo2Config", "Olmo2ForCausalLM", LLAMA_LIKE),
    Spec("cohere", "decoder", "CohereConfig", "CohereForCausalLM", LLAMA_LIKE),
    Spec("starcoder2", "decoder", "Starcoder2Config", "Starcoder2ForCausalLM", LLAMA_LIKE),
    Spec("granite", "decoder", "GraniteConfig", "GraniteForCausalLM", LLAMA_LIKE),
    Spec("biogpt", "decoder", "BioGptConfig", "BioGptForCausalLM", BERT_LIKE),
    # encoders
    Spec("bert", "encoder", "BertConfig", "BertModel", BERT_LIKE, note="with its tanh pooler"),
    Spec("roberta", "encoder", "RobertaConfig", "RobertaForMaskedLM", dict(BERT_LIKE, pad_token_id=1)),
    Spec("distilbert", "encoder", "DistilBertConfig", "DistilBertForMaskedLM",
         dict(vocab_size=VOCAB, dim=32, hidden_dim=64, n_layers=2, n_heads=4, max_position_embeddings=64)),
    Spec("albert", "encoder", "AlbertConfig", "AlbertForMaskedLM", dict(BERT_LIKE, embedding_size=16)),
    Spec("electra", "encoder", "ElectraConfig", "ElectraForPreTraining", dict(BERT_LIKE, embedding_size=16)),
    # DeBERTa-v2's released configs all set pos_att_type; without it the relative embeddings are
    # computed and never used (NN406 says so, rightly: TRIAGE.md).
    Spec("deberta_v2", "encoder", "DebertaV2Config", "DebertaV2ForMaskedLM",
         dict(BERT_LIKE, relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"])),
    Spec("mpnet", "encoder", "MPNetConfig", "MPNetForMaskedLM", BERT_LIKE),
    Spec("modernbert", "encoder", "ModernBertConfig", "ModernBertForMaskedLM",
         dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
              max_position_embeddings=64, local_attention=8, pad_token_id=0, eos_token_id=1, bos_token_id=2,
              cls_token_id=3, sep_token_id=4)),
    Spec("convbert", "encoder", "ConvBertConfig", "ConvBertModel", dict(BERT_LIKE, embedding_size=32)),
    # encoder-decoder
    Spec("t5", "encoder-decoder", "T5Config", "T5ForConditionalGeneration", T5_LIKE, "seq2seq",
         note="relative-position buckets take log(0) = -inf, masked by design"),
    Spec("bart", "encoder-decoder", "BartConfig", "BartForConditionalGeneration", BART_LIKE, "seq2seq"),
    Spec("pegasus", "encoder-decoder", "PegasusConfig", "PegasusForConditionalGeneration", BART_LIKE, "seq2seq"),
    Spec("marian", "encoder-decoder", "MarianConfig", "MarianMTModel", dict(BART_LIKE, pad_token_id=0,
                                                                            decoder_start_token_id=0), "seq2seq"),
    Spec("mbart", "encoder-decoder", "MBartConfig", "MBartForConditionalGeneration", BART_LIKE, "seq2seq"),
    # mixture of experts
    Spec("mixtral", "moe", "MixtralConfig", "MixtralForCausalLM", dict(LLAMA_LIKE, num_local_experts=4,
                                                                     num_experts_per_tok=2)),
    Spec("qwen2_moe", "moe", "Qwen2MoeConfig", "Qwen2MoeForCausalLM",
         dict(LLAMA_LIKE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
              shared_expert_intermediate_size=32)),
    Spec("olmoe", "moe", "OlmoeConfig", "OlmoeForCausalLM", dict(LLAMA_LIKE, num_experts=4, num_experts_per_tok=2)),
    Spec("granitemoe", "moe", "GraniteMoeConfig", "GraniteMoeForCausalLM",
         dict(LLAMA_LIKE, num_local_experts=4, num_experts_per_tok=2)),
    Spec("switch_transformers", "moe", "SwitchTransformersConfig", "SwitchTransformersForConditionalGeneration",
         dict(T5_LIKE, num_experts=4, expert_capacity=8, num_sparse_encoder_layers=1, num_sparse_decoder_layers=1,
              num_decoder_layers=2), "seq2seq"),
    # state-space and recurrent
    Spec("mamba", "ssm", "MambaConfig", "MambaForCausalLM",
         dict(vocab_size=VOCAB, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4),
         note="the slow (pure torch) selective scan"),
    Spec("mamba2", "ssm", "Mamba2Config", "Mamba2ForCausalLM",
         dict(vocab_size=VOCAB, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4,
              num_heads=8, head_dim=8, n_groups=1, chunk_size=8)),
    Spec("falcon_mamba", "ssm", "FalconMambaConfig", "FalconMambaForCausalLM",
         dict(vocab_size=VOCAB, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4)),
    Spec("rwkv", "ssm", "RwkvConfig", "RwkvForCausalLM",
         dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, attention_hidden_size=32,
              intermediate_size=64, context_length=64)),
    Spec("recurrent_gemma", "ssm", "RecurrentGemmaConfig", "RecurrentGemmaForCausalLM",
         dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=1, lru_width=32, attention_window_size=8, conv1d_width=4, head_dim=8,
              block_types=("recurrent", "recurrent", "attention"))),
    Spec("jamba", "ssm", "JambaConfig", "JambaForCausalLM",
         dict(LLAMA_LIKE, num_hidden_layers=2, num_experts=4, num_experts_per_tok=2, expert_layer_period=2,
              expert_layer_offset=1, attn_layer_period=2, attn_layer_offset=1, mamba_d_state=8, mamba_d_conv=4,
              mamba_expand=2, mamba_dt_rank=4, use_mamba_kernels=False), note="Mamba + attention + MoE"),
    # vision
    Spec("vit", "vision", "ViTConfig", "ViTForImageClassification", VIT_LIKE, "image"),
    Spec("deit", "vision", "DeiTConfig", "DeiTForImageClassification", VIT_LIKE, "image"),
    Spec("beit", "vision", "BeitConfig", "BeitForImageClassification", dict(VIT_LIKE, vocab_size=64), "image"),
    Spec("dinov2", "vision", "Dinov2Config", "Dinov2Model", VIT_LIKE, "image"),
    Spec("swin", "vision", "SwinConfig", "SwinForImageClassification",
         dict(image_size=IMAGE, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4), "image"),
    Spec("convnext", "vision", "ConvNextConfig", "ConvNextForImageClassification",
         dict(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2), "image"),
    Spec("resnet", "vision", "ResNetConfig", "ResNetForImageClassification",
         dict(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic"), "image"),
    Spec("segformer", "vision", "SegformerConfig", "SegformerForSemanticSegmentation",
         dict(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2],
              patch_sizes=[7, 3], strides=[4, 2], decoder_hidden_size=32), "image"),
    # 128x128: at 32x32 the last two MobileViT stages see one 2x2 patch, so attention runs over a
    # single token and query/key get exactly-zero gradients (a true NN406 on a degenerate input).
    Spec("mobilevit", "vision", "MobileViTConfig", "MobileViTForImageClassification",
         dict(image_size=128, hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 48]), "image",
         size=128),
    Spec("clip", "multimodal", "CLIPConfig", "CLIPModel",
         dict(text_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, max_position_embeddings=64, bos_token_id=1, eos_token_id=2),
              vision_config=dict(VIT_LIKE), projection_dim=16), "clip"),
    # speech
    Spec("wav2vec2", "speech", "Wav2Vec2Config", "Wav2Vec2ForCTC", WAV2VEC_LIKE, "waveform"),
    Spec("hubert", "speech", "HubertConfig", "HubertForCTC", WAV2VEC_LIKE, "waveform"),
    Spec("wavlm", "speech", "WavLMConfig", "WavLMForCTC", dict(WAV2VEC_LIKE, num_buckets=16, max_bucket_distance=32),
         "waveform"),
    Spec("whisper", "speech", "WhisperConfig", "WhisperForConditionalGeneration",
         dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
              decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
              max_source_positions=32, max_target_positions=32, decoder_start_token_id=1, pad_token_id=0,
              eos_token_id=2, bos_token_id=1, suppress_tokens=None, begin_suppress_tokens=None), "mel"),
    Spec("speech_to_text", "speech", "Speech2TextConfig", "Speech2TextForConditionalGeneration",
         dict(BART_LIKE, input_feat_per_channel=16, input_channels=1, conv_channels=32, num_conv_layers=2,
              max_source_positions=64, max_target_positions=64), "s2t"),
    Spec("audio_spectrogram_transformer", "speech", "ASTConfig", "ASTForAudioClassification",
         dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_mel_bins=32,
              max_length=64, patch_size=16, frequency_stride=10, time_stride=10), "spectrogram"),
]
# The same architectures trained as their heads are: labels in the batch, so the model computes
# outputs.loss itself (the loss the objective rules NN601-NN606 read): causal LM (labels = ids, -100
# at padding, shifted inside), masked LM (every 4th token), sequence/image classification (3 and 10
# classes), seq2seq (labels shifted to the decoder inputs inside), CTC (short label sequences).
LABELLED = [
    Spec("gpt2+labels", "decoder", "GPT2Config", "GPT2LMHeadModel", SPECS[0].kwargs, labels="lm"),
    Spec("llama+labels", "decoder", "LlamaConfig", "LlamaForCausalLM", LLAMA_LIKE, labels="lm"),
    Spec("mixtral+labels", "moe", "MixtralConfig", "MixtralForCausalLM",
         dict(LLAMA_LIKE, num_local_experts=4, num_experts_per_tok=2, output_router_logits=True), labels="lm",
         note="router aux loss in outputs.loss"),
    Spec("bert+labels", "encoder", "BertConfig", "BertForSequenceClassification", dict(BERT_LIKE, num_labels=3),
         labels="class"),
    Spec("roberta+labels", "encoder", "RobertaConfig", "RobertaForMaskedLM", dict(BERT_LIKE, pad_token_id=1),
         labels="mlm"),
    Spec("t5+labels", "encoder-decoder", "T5Config", "T5ForConditionalGeneration", T5_LIKE, "seq2seq",
         labels="seq2seq"),
    Spec("bart+labels", "encoder-decoder", "BartConfig", "BartForConditionalGeneration", BART_LIKE, "seq2seq",
         labels="seq2seq"),
    Spec("vit+labels", "vision", "ViTConfig", "ViTForImageClassification", dict(VIT_LIKE, num_labels=10), "image",
         labels="class"),
    Spec("wav2vec2+labels", "speech", "Wav2Vec2Config", "Wav2Vec2ForCTC", WAV2VEC_LIKE, "waveform", labels="ctc"),
    Spec("whisper+labels", "speech", "WhisperConfig", "WhisperForConditionalGeneration",
         next(s for s in SPECS if s.name == "whisper").kwargs, "mel", labels="seq2seq"),
]
SPECS = SPECS + LABELLED

# One model per distinct cause in TRIAGE.md among them, so a rule fix shows in CI.
FAST = {"gpt2", "llama", "bert", "t5", "mixtral", "mamba", "vit", "wav2vec2", "whisper", "bart", "gpt_neo", "albert",
        "cohere", "modernbert", "dinov2", "gpt2+labels", "bert+labels", "t5+labels"}
COMPILE = {"gpt2", "llama"}


def make_batch(spec: Spec, config) -> dict:
    """The batch for a spec's kind (see the module docstring)."""
    kind = spec.batch
    if kind in ("text", "seq2seq", "clip"):
        batch = inputs.text(2, TEXT_LEN, VOCAB)
        if kind == "seq2seq":
            batch["decoder_input_ids"] = inputs.token_ids(2, DECODER_LEN, VOCAB, seed=1)
        if kind == "clip":
            batch["pixel_values"] = inputs.images(2, IMAGE)
        return batch
    if kind == "image":
        return {"pixel_values": inputs.images(2, spec.size)}
    if kind == "waveform":
        return {"input_values": inputs.waveform(2, 4000)}
    if kind == "mel":
        frames = 2 * config.max_source_positions   # Whisper's encoder wants exactly this many
        return {"input_features": inputs.features(2, config.num_mel_bins, frames),
                "decoder_input_ids": inputs.token_ids(2, DECODER_LEN, VOCAB, seed=1)}
    if kind == "s2t":
        return {"input_features": inputs.features(2, 40, config.input_feat_per_channel),
                "attention_mask": inputs.attention_mask(2, 40, padded=4),
                "decoder_input_ids": inputs.token_ids(2, DECODER_LEN, VOCAB, seed=1)}
    if kind == "spectrogram":
        return {"input_values": inputs.features(2, config.max_length, config.num_mel_bins)}
    raise ValueError(f"unknown batch kind {kind!r}")


def add_labels(spec: Spec, config, batch: dict) -> dict:
    """The labels a training script passes for the head (see LABELLED)."""
    kind = spec.labels
    if kind == "lm":
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    elif kind == "mlm":
        labels = torch.full_like(batch["input_ids"], -100)
        labels[:, ::4] = batch["input_ids"][:, ::4]
        batch["labels"] = labels
    elif kind == "class":
        batch["labels"] = torch.tensor([1, 0] + [2] * (len(next(iter(batch.values()))) - 2))[:len(next(iter(batch.values())))]
    elif kind == "seq2seq":
        batch["labels"] = batch.pop("decoder_input_ids")
    elif kind == "ctc":
        batch["labels"] = inputs.token_ids(2, 4, config.vocab_size, seed=2)
    return batch


def build(spec: Spec):
    config = getattr(transformers, spec.config)(**spec.kwargs)
    model = seeded(lambda: getattr(transformers, spec.model)(config))
    batch = make_batch(spec, config)
    return model, add_labels(spec, config, batch) if spec.labels else batch


BATCH_NOTES = {
    "text": f"2x{TEXT_LEN} token ids, attention mask (last sample right-padded by 3)",
    "seq2seq": f"2x{TEXT_LEN} token ids + mask, 2x{DECODER_LEN} decoder ids",
    "clip": f"2x{TEXT_LEN} token ids + mask and 2x3x{IMAGE}x{IMAGE} standardized images",
    "image": "2x3x{size}x{size} standardized images",
    "waveform": "2x4000 standardized raw audio",
    "mel": "2 standardized log-mel inputs (16 bins x 64 frames), 2x8 decoder ids",
    "s2t": "2x40x16 standardized filterbank features + mask (last sample padded by 4), 2x8 decoder ids",
    "spectrogram": "2x64x32 standardized spectrogram",
}


def cases() -> list[Case]:
    return [Case(f"hf/{s.name}", "transformers", s.family, partial(build, s),
                 note=BATCH_NOTES[s.batch].format(size=s.size) + (f"; {s.labels} labels" if s.labels else "")
                 + (f"; {s.note}" if s.note else ""),
                 compile=s.name in COMPILE, fast=s.name in FAST, tags=(s.family,))
            for s in SPECS]


VERSION = transformers.__version__
