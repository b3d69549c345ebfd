"""The original public FashionVLP system's model, preset `original`: its architecture parameter for parameter,
so its checkpoints load (docs/original.md). Its token ids are bert-base-uncased's, so a random-init model
keeps that vocabulary, and its checkpoint files are recognised and converted on reading."""

from __future__ import annotations

from typing import Any

from fashionrec.data.preprocess_config import PreprocessConfig
from fashionrec.model.config import ModelConfig
from fashionrec.model.families.fashionvlp import BERT_BASE, FashionVLPConfig, FashionVLPFamily, create_bert_model
from fashionrec.model.registry import CreateRequest, register

# The original system padded bert-base-uncased ids to 100 tokens; its checkpoints were trained on that length.
ORIGINAL_TEXT_LEN = 100


def original() -> FashionVLPConfig:
    return FashionVLPConfig(
        preset="original",
        backbone="resnet50",
        image_size=224,
        text=dict(BERT_BASE),
        max_text_len=ORIGINAL_TEXT_LEN,
        text_model="bert-base-uncased",
        # Its own landmark detector and conventions; its YOLO crop needs the user's weights (--crop yolo).
        preprocess=PreprocessConfig(landmarks="original").model_settings(),
    )


class OriginalFamily(FashionVLPFamily):
    """FashionVLP's config and tokenizer; the original's model, parts, vocabulary and checkpoint files."""

    name = "original"
    presets = {"original": original}
    foreign = "the original system"

    def create(self, config: ModelConfig, request: CreateRequest) -> Any:
        return create_bert_model(config, request, self.build, vocab="bert")  # type: ignore[arg-type]

    def build(self, config: ModelConfig, tokenizer: Any) -> Any:
        from fashionrec.model.original import OriginalFashionVLP

        return OriginalFashionVLP(config, tokenizer)  # type: ignore[arg-type]

    def parts(self, model: Any) -> dict[str, list]:
        return {
            "backbone": list(model.target_block.feature_extractor.parameters()),
            "text": list(model.reference_block.vlp_transformer.parameters()),
        }

    def reads(self, data: Any) -> bool:
        from fashionrec.model.original_format import is_original_checkpoint

        return is_original_checkpoint(data)

    def convert(self, data: Any, source: str, text_model: str | None) -> dict[str, Any]:
        from fashionrec.model.original_format import convert_original

        return convert_original(data, source, text_model)


register(OriginalFamily())
