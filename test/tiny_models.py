"""Tiny random models with the published architectures, saved the way users' checkpoints are.

Each builder takes the real checkpoint's config from
``partseg_ros.backends.reference_configs``, shrinks widths and depths, builds
the matching tokenizer/processor offline from Python objects, and writes
everything with ``save_pretrained`` so tests reload it through the exact
``from_pretrained`` path the backends use on a robot.
"""

from __future__ import annotations

import contextlib
import string
from pathlib import Path
from typing import Iterable, Iterator

import torch

from partseg_ros.backends.reference_configs import reference_config, shrink

#: Words the tiny tokenizers know as whole tokens; anything else falls back to characters.
WORDS = (
    "a an the of to and it is in on for with up down open pick pour grasp hold cut use press lift "
    "mug cup handle rim body knife blade bottle cap neck kettle spout lid drawer door knob scissors "
    "spatula pan wine glass stem cork please output segmentation mask sure user assistant part object"
).split()


@contextlib.contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """Run tiny models single-threaded: on a shared, oversubscribed CPU, intra-op thread
    synchronisation costs 10-50x more than the tiny matmuls themselves."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _chain_merges(symbols: list[str]) -> list[tuple[str, str]]:
    """Left-to-right BPE merges that assemble ``symbols`` into one token."""
    merges, current = [], symbols[0]
    for sym in symbols[1:]:
        merges.append((current, sym))
        current += sym
    return merges


def _bpe_tables(words: Iterable[str], alphabet: Iterable[str],
                word_symbols) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []

    def add(token: str) -> None:
        if token not in vocab:
            vocab[token] = len(vocab)

    for ch in alphabet:
        add(ch)
    for word in words:
        symbols = word_symbols(word)
        for sym in symbols:
            add(sym)
        for left, right in _chain_merges(symbols):
            if (left, right) not in merges:
                merges.append((left, right))
            add(left + right)
    return vocab, merges


def build_clip_tokenizer(words: Iterable[str] = WORDS):
    """CLIP BPE tokenizer (OWLv2's text side): word-final symbols carry '</w>'."""
    from transformers import CLIPTokenizer

    chars = string.ascii_lowercase + string.digits + ".,:;'?!-_"
    alphabet = list(chars) + [c + "</w>" for c in chars]
    vocab, merges = _bpe_tables(words, alphabet, lambda w: list(w[:-1]) + [w[-1] + "</w>"])
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def build_llama_tokenizer(words: Iterable[str] = WORDS):
    """LLaMA-style BPE tokenizer (metaspace '▁' word starts), as Vicuna/LISA use."""
    from transformers import LlamaTokenizer

    chars = string.ascii_letters + string.digits + ".,:;'?!-_{}"
    alphabet = ["<unk>", "<s>", "</s>", "▁"] + list(chars)
    vocab, merges = _bpe_tables(words, alphabet, lambda w: ["▁"] + list(w))
    return LlamaTokenizer(vocab=vocab, merges=merges)


def build_bert_tokenizer(words: Iterable[str] = WORDS):
    """BERT WordPiece tokenizer (Grounding DINO's text side)."""
    from transformers import BertTokenizer

    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    for tok in (list(string.ascii_lowercase + string.digits + ".,:;'?!-_") + ["##" + c for c in string.ascii_lowercase]
                + list(words)):
        vocab.setdefault(tok, len(vocab))
    return BertTokenizer(vocab=vocab)


def _save(model, directory: Path, *extras) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    for extra in extras:
        extra.save_pretrained(directory)
    return directory


def save_tiny_dinov2(directory: Path, layers: int = 4, seed: int = 0) -> Path:
    """DINOv2 (facebook/dinov2-base architecture) at width 32, ``layers`` deep."""
    from transformers import BitImageProcessorPil, Dinov2Model

    torch.manual_seed(seed)
    config = shrink(reference_config("facebook/dinov2-base"), hidden_size=32, num_hidden_layers=layers,
                    num_attention_heads=2, image_size=56)
    processor = BitImageProcessorPil(
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], size={"shortest_edge": 56},
        crop_size={"height": 56, "width": 56},
    )
    return _save(Dinov2Model(config), directory, processor)


def save_tiny_llama(directory: Path, layers: int = 2, seed: int = 0) -> Path:
    """Causal LM of the LLaMA/Vicuna family (PISA's language side) with its tokenizer."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_llama_tokenizer()
    config = shrink(reference_config("lmsys/vicuna-7b-v1.5"), vocab_size=len(tokenizer), hidden_size=48,
                    intermediate_size=96, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=None)
    return _save(LlamaForCausalLM(config), directory, tokenizer)


def save_tiny_owlv2(directory: Path, image_size: int = 64, seed: int = 0) -> Path:
    """OWLv2 (google/owlv2-base-patch16-ensemble architecture) with a PIL image processor."""
    from transformers import Owlv2ForObjectDetection, Owlv2Processor
    from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil

    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer()
    config = shrink(
        reference_config("google/owlv2-base-patch16-ensemble"),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=16),
        projection_dim=32,
    )
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessorPil(size={"height": image_size, "width": image_size}), tokenizer=tokenizer
    )
    model = Owlv2ForObjectDetection(config)
    start_boxes_at_prior(model)
    return _save(model, directory, processor)


def start_boxes_at_prior(owlv2) -> None:
    """Zero the box head's last layer so random OWLv2 boxes equal the model's grid prior (box bias).

    OWLv2 initialises its box head with unit-variance weights; on random
    features that saturates the sigmoid into zero-area boxes, and no detection
    would ever reach SAM. Starting the last layer at zero keeps everything else random.
    """
    with torch.no_grad():
        owlv2.box_head.dense2.weight.zero_()
        owlv2.box_head.dense2.bias.zero_()


def save_tiny_sam(directory: Path, image_size: int = 128, seed: int = 0) -> Path:
    """SAM (facebook/sam-vit-base architecture) with a PIL image processor."""
    from transformers import SamModel, SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    torch.manual_seed(seed)
    grid = image_size // 16
    config = shrink(
        reference_config("facebook/sam-vit-base"),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, global_attn_indexes=[1],
                           mlp_dim=64, output_channels=32, num_pos_feats=16, image_size=image_size, window_size=4),
        prompt_encoder_config=dict(hidden_size=32, image_size=image_size, image_embedding_size=grid),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )
    processor = SamProcessor(
        image_processor=SamImageProcessorPil(size={"longest_edge": image_size},
                                             pad_size={"height": image_size, "width": image_size})
    )
    return _save(SamModel(config), directory, processor)


def save_tiny_grounding_dino(directory: Path, seed: int = 0) -> Path:
    """Grounding DINO (IDEA-Research/grounding-dino-tiny: Swin-T + BERT) shrunk, with a PIL image processor."""
    from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    torch.manual_seed(seed)
    tokenizer = build_bert_tokenizer()
    config = shrink(
        reference_config("IDEA-Research/grounding-dino-tiny"),
        backbone_config=dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4, image_size=64,
                             hidden_size=128),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=20, max_text_len=32,
        encoder_n_points=2, decoder_n_points=2,
    )
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}),
        tokenizer=tokenizer
    )
    return _save(GroundingDinoForObjectDetection(config), directory, processor)


def save_tiny_pisa(directory: Path, backbone_dir: Path, lm_dir: Path, seed: int = 0, **head_overrides) -> Path:
    """A random PISA head sized for the given tiny backbone and language model."""
    from transformers import AutoConfig

    from partseg_ros.backends.pisa.model import PisaHead, PisaHeadConfig

    torch.manual_seed(seed)
    options = dict(image_size=56, decoder_dim=32, decoder_depth=2, decoder_heads=2, decoder_mlp_dim=64)
    options.update(head_overrides)
    config = PisaHeadConfig.for_models(AutoConfig.from_pretrained(backbone_dir), AutoConfig.from_pretrained(lm_dir),
                                       **options)
    return PisaHead(config).save(directory)
