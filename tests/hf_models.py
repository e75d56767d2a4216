"""Tiny randomly initialised Hugging Face models built from configs and saved as model folders, so
the LLM methods' generation path runs for real with no download: a BLIP-2 (OPT) captioner and a
Llama-style chat LLM sharing a word-level tokenizer over a small vocabulary."""

from __future__ import annotations

from pathlib import Path

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "<image>"] + (
    "a an the red blue green yellow white gray dog cat photo of image content instruction edited description "
    ": . , and make it system user assistant shirt cup one thing").split()


def tokenizer(image_token: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    if image_token:
        fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return fast


def tiny_blip2(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor, OPTConfig

    torch.manual_seed(seed)
    text = OPTConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, ffn_dim=37, num_attention_heads=2,
                     max_position_embeddings=128, word_embed_proj_dim=32, pad_token_id=0, bos_token_id=2,
                     eos_token_id=3)
    config = Blip2Config(vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                            num_attention_heads=2, image_size=30, patch_size=15),
                         qformer_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=37, encoder_hidden_size=32, vocab_size=len(WORDS)),
                         text_config=text.to_dict(), num_query_tokens=4, image_token_index=WORDS.index("<image>"))
    Blip2ForConditionalGeneration(config).save_pretrained(folder)
    processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": 30, "width": 30}),
                               tokenizer=tokenizer(image_token=True), num_query_tokens=4)
    processor.save_pretrained(folder)
    return folder


def tiny_llm(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                                 pad_token_id=0, bos_token_id=2, eos_token_id=3)).save_pretrained(folder)
    tok = tokenizer()
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} . {% endfor %}"
                         "{% if add_generation_prompt %}assistant : {% endif %}")
    tok.save_pretrained(folder)
    return folder


def clip_tokenizer_files(folder: Path) -> Path:
    """vocab.json and merges.txt of CLIP's BPE (the real 49,408-token vocabulary, rebuilt from the
    merges open_clip ships) for a transformers CLIPTokenizer."""
    import json

    import open_clip

    tok = open_clip.tokenizer.SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(k, k): v for k, v in tok.encoder.items()}
    merges = [" ".join(pair) for pair, _ in sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def tiny_hf_clip(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """A transformers CLIPModel with random weights, its CLIPTokenizer and a CLIPImageProcessor whose
    crop is smaller than its resize (so the crop offsets matter), saved as a model folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=49407),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8),
        projection_dim=24)
    model = CLIPModel(config).eval()
    with torch.no_grad():  # no zero biases or unit norms that would hide a mistake
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(folder)
    files = clip_tokenizer_files(folder / "_tok")
    CLIPTokenizer(str(files / "vocab.json"), str(files / "merges.txt")).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": image_size + 5}, crop_size={"height": image_size, "width": image_size},
                       resample=3).save_pretrained(folder)
    return folder


LLAMA3_WORDS = ("change the style of this dress shirt to describe desribe modified in one word based on its image "
                "modify with user assistant red blue long short sleeves is and a more colorful darker "
                "INST instruct query retrieve target that best meets combined criteria by using both provided "
                "retrieval instructions find picture also but").split()


def llama3_tokenizer():
    """A word-level tokenizer with llama3's chat tokens and BOS post-processor, and E5-V's added <image>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", *LLAMA3_WORDS, "<|begin_of_text|>", "<|start_header_id|>",
                                         "<|end_header_id|>", "<|eot_id|>"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", vocab["<|begin_of_text|>"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   unk_token="<unk>", pad_token="<|eot_id|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"]})
    fast.add_tokens(["<image>"])
    fast.padding_side = "left"
    return fast


def tiny_llava_next(folder: Path, seed: int = 0, mistral: bool = False) -> Path:
    """A random LLaVA-NeXT in the released folder layout (config, weights, processor, tokenizer): a
    28-pixel CLIP tower with 14-pixel patches (2 x 2 patches a tile), a Llama language model, grid
    pinpoints of 1 x 2, 2 x 1 and 2 x 2 tiles (non-square grids, where the tile layouts differ)."""
    import torch
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessor, LlavaNextProcessor, MistralConfig)

    folder.mkdir(parents=True, exist_ok=True)
    tok = llama3_tokenizer()
    pinpoints = [[28, 56], [56, 28], [56, 56]]
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                              image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=14,
                                   vision_feature_select_strategy="default")
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=28, patch_size=14, projection_dim=16),
        text_config=(MistralConfig if mistral else LlamaConfig)(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=len(tok), max_position_embeddings=512),
        image_grid_pinpoints=pinpoints, image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    with torch.no_grad():  # a visible image_newline (it is random, but make it large enough to matter)
        getattr(model, "model", model).image_newline.mul_(10)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# Qwen/Qwen2-VL-7B-Instruct's chat template (its chat_template.json), which LamRA's collator applies
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == "
    "'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}")
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                  "<|video_pad|>"]


def byte_tokenizer():
    """A byte-level BPE without merges (every byte of a text is a token, so every character of a prompt
    reaches the model) with Qwen2-VL's special tokens, padding on the left."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))},
                               merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": QWEN2_SPECIALS[1:]})
    fast.padding_side = "left"
    return fast


def tiny_qwen2_vl(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """(a LamRA-Ret-like model folder, a Qwen2-VL-Instruct-like processor folder): a random Qwen2-VL
    saved as transformers 4.45 saved it (a flat config, ``visual.*`` and ``model.*`` weight names) with
    one embedding row more than the tokenizer (LamRA's resize for ``<emb>``), and the processor LamRA's
    evaluation loads from the original repository (byte tokenizer, the Qwen2-VL-Instruct chat template,
    Qwen2-VL-7B-Instruct's pixel bounds)."""
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    model_dir, processor_dir = folder / "lamra-ret", folder / "qwen2-vl-instruct"
    model_dir.mkdir(parents=True, exist_ok=True)
    tok = byte_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN2_SPECIALS}
    flat = {"architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl", "attention_dropout": 0.0,
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
            "vision_token_id": ids["<|image_pad|>"] + 100, "image_token_id": ids["<|image_pad|>"],
            "video_token_id": ids["<|video_pad|>"], "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
            "intermediate_size": 96, "max_position_embeddings": 4096, "max_window_layers": 2, "num_attention_heads": 4,
            "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "sliding_window": 4096, "tie_word_embeddings": False, "torch_dtype": "float32",
            "transformers_version": "4.45.0.dev0", "use_cache": True, "use_sliding_window": False,
            "vision_config": {"depth": 2, "embed_dim": 32, "mlp_ratio": 2, "num_heads": 2, "in_chans": 3,
                              "hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}, "vocab_size": len(tok) + 1}
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(**{k: v for k, v in flat.items()
                                                             if k not in ("architectures", "model_type")}))
    with torch.no_grad():  # no zero biases or unit norms that would hide a mistake
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    weights = {}
    for key, value in model.state_dict().items():  # 4.45's names
        key = key.replace("model.visual.", "visual.", 1).replace("model.language_model.", "model.", 1)
        weights[key] = value.contiguous()
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    (model_dir / "config.json").write_text(json.dumps(flat, indent=2), encoding="utf-8")
    processor_dir.mkdir(parents=True, exist_ok=True)
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    tok.save_pretrained(processor_dir)
    (processor_dir / "preprocessor_config.json").write_text(json.dumps({  # as the 4.45-era repository has it
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor"}), encoding="utf-8")
    (processor_dir / "chat_template.json").write_text(json.dumps({"chat_template": QWEN2_VL_CHAT_TEMPLATE}),
                                                      encoding="utf-8")
    return model_dir, processor_dir
