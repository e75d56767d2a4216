"""LamRA-Ret's zero-shot evaluation as its official code runs it (Code-kunkun/LamRA at 7286399:
dataset/datasets_circo.py and datasets_genecis.py construct_messages / get_instance,
collators/eval_collator.py, collators/qwen2_vision_process.py fetch_image, models/qwen2_vl.py
Qwen2VLRetForConditionalGeneration.forward with inference=True, eval/eval_zeroshot/eval_genecis.py's
scoring), transcribed onto the installed transformers' classes for the tests: the messages go through
the processor's own chat template and processor, the image tokens' rows are overwritten with the vision
tower's output, the text model runs with position_ids None, the state before the first <emb> is read.
Written from the official code, independently of cirbench's qwen2-vl kind."""

from __future__ import annotations

import math

import torch

MIN_PIXELS, MAX_PIXELS = 4 * 28 * 28, 300 * 28 * 28


def messages(text=None, image=None):
    """construct_messages(text, image) of datasets_circo.py / datasets_genecis.py."""
    if text is None:
        user = [{"type": "image", "image": image}, {"type": "text", "text": "\nSummarize above image in one word: "}]
    else:
        user = [{"type": "image", "image": image}, {"type": "text", "text": f"{text}"},
                {"type": "text", "text": "\nSummarize above image and sentence in one word: "}]
    return [{"role": "user", "content": user}, {"role": "assistant", "content": [{"type": "text", "text": "<emb>."}]}]


def query_text(caption, task=None):
    """get_instance's query text: the instruction, a space, the caption (the attribute instruction only for
    GeneCIS's focus_attribute images)."""
    instruction = ("I'm looking for an image with the same attributes as described." if task == "focus_attribute"
                   else "I'm looking for a similar everyday image with the described changes.")
    return f"{instruction} {caption}"


def smart_resize(height, width, factor=28, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS):
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def fetch_image(image):
    image = image.convert("RGB")
    width, height = image.size
    resized_height, resized_width = smart_resize(height, width)
    return image.resize((resized_width, resized_height))


def add_embed_token(tokenizer, model):
    if "<emb>" not in tokenizer.get_vocab():
        assert tokenizer.add_tokens(["<emb>"]) == 1
    model.resize_token_embeddings(len(tokenizer))
    return tokenizer.convert_tokens_to_ids("<emb>")


def embed(model, processor, emb_id, batch_messages):
    """EvalDataCollator then Qwen2VLRetForConditionalGeneration(**batch, inference=True), normalised."""
    texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in batch_messages]
    images = [fetch_image(c["image"]) for m in batch_messages for c in m[0]["content"] if c["type"] == "image"]
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    labels = inputs["input_ids"].clone()
    labels[labels == processor.tokenizer.pad_token_id] = -100
    core = model.model
    visual, text_model = (core.visual, core.language_model) if hasattr(core, "language_model") else (model.visual, core)
    with torch.no_grad():
        inputs_embeds = text_model.embed_tokens(inputs["input_ids"])
        out = visual(inputs["pixel_values"].type(visual.dtype), grid_thw=inputs["image_grid_thw"])
        image_embeds = out if torch.is_tensor(out) else out.pooler_output
        inputs_embeds[inputs["input_ids"] == model.config.image_token_id] = image_embeds
        hidden = text_model(input_ids=None, position_ids=None, attention_mask=inputs["attention_mask"],
                            inputs_embeds=inputs_embeds, return_dict=True).last_hidden_state
    at = torch.argmax((labels == emb_id).int(), dim=1)
    return torch.nn.functional.normalize(hidden[torch.arange(len(at)), at - 1], dim=-1)


def genecis_recall(query_features, gallery_features, ks=(1, 2, 3)):
    """eval_genecis.py: each query against [target] + its gallery, sorted descending; target index 0."""
    hits = {k: [] for k in ks}
    for q, g in zip(query_features, gallery_features):
        _, order = (q @ g.T).sort(dim=-1, descending=True)
        for k in ks:
            hits[k].append(1 if 0 in order[:k] else 0)
    return {k: sum(v) / len(v) for k, v in hits.items()}


def processor_smart_resize_445(height, width, factor=28, min_pixels=56 * 56, max_pixels=14 * 14 * 4 * 1280):
    """transformers 4.45.2 models/qwen2_vl/image_processing_qwen2_vl.py smart_resize (the processor's own,
    after LamRA's: a ValueError below the factor, no floor at it)."""
    if height < factor or width < factor:
        raise ValueError(f"height:{height} or width:{width} must be larger than factor:{factor}")
    elif max(height, width) / min(height, width) > 200:
        raise ValueError("absolute aspect ratio must be smaller than 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar
