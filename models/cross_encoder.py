"""Cross-encoder architectures for sentence-pair regression, and how their outputs become scores.

Two heads are supported, both loadable with ``AutoModelForSequenceClassification``:

* ``cls``: the architecture's own sequence-classification head (pooled ``[CLS]``), built by
  ``AutoModelForSequenceClassification`` with ``num_labels=1``.
* ``mean``: :class:`MeanPoolingCrossEncoder`, a masked mean over the last hidden state followed
  by one linear unit. It needs no pooler, which helps encoders shipped without one (e5).

How raw model outputs map to a 0-5 similarity is stored in ``config.ko_sts`` (see
:class:`models.scoring.ScoreSettings`): training writes it, every scoring backend reads it.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import SequenceClassifierOutput

from models.scoring import ScoreSettings

logger = logging.getLogger(__name__)

Pooling = Literal["cls", "mean"]


class MeanPoolingCrossEncoderConfig(PreTrainedConfig):
    """Configuration of :class:`MeanPoolingCrossEncoder`: an encoder config plus the head's dropout."""

    model_type = "ko-sts-mean-pooling"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    classifier_dropout: float = 0.1


class MeanPoolingCrossEncoder(PreTrainedModel):
    """Any Hugging Face encoder, masked mean pooling, dropout and a single regression unit."""

    config_class = MeanPoolingCrossEncoderConfig
    base_model_prefix = "backbone"
    _supports_sdpa = True

    def __init__(self, config: MeanPoolingCrossEncoderConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config.encoder)
        if getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None  # mean pooling replaces it; keep no untrained weights
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.regressor = nn.Linear(config.encoder.hidden_size, 1)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is self.regressor:
            module.weight.data.normal_(mean=0.0, std=self.config.encoder.initializer_range)
            module.bias.data.zero_()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """Returns logits of shape (batch, 1) and, given ``labels``, the MSE loss."""
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            encoder_inputs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**encoder_inputs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        logits = self.regressor(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(MeanPoolingCrossEncoderConfig.model_type, MeanPoolingCrossEncoderConfig)
AutoModelForSequenceClassification.register(MeanPoolingCrossEncoderConfig, MeanPoolingCrossEncoder)


def build_cross_encoder(model_name_or_path: str, pooling: Pooling, settings: ScoreSettings) -> PreTrainedModel:
    """Loads a pretrained encoder (or a finished cross-encoder) with a one-output regression head.

    The weights are loaded in float32 whatever dtype the checkpoint's config names: a package
    saved in float16 (``save_dtype: float16``, the store's GPU weights) trained in its own dtype
    would take float16 optimizer steps, which AdamW's epsilon does not survive. Mixed precision
    comes from the trainer's ``bf16``/``fp16`` autocast instead. The returned model carries
    ``settings`` in its config, so ``save_pretrained`` keeps them.
    """
    if pooling == "cls":
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name_or_path, num_labels=1, problem_type="regression", dtype=torch.float32
        )
    elif pooling == "mean":
        backbone = AutoModel.from_pretrained(model_name_or_path, dtype=torch.float32)
        config = MeanPoolingCrossEncoderConfig(encoder=backbone.config.to_dict())
        model = MeanPoolingCrossEncoder(config, backbone=backbone)
    else:
        raise ValueError(f"pooling must be one of 'cls', 'mean'; got {pooling!r}")
    settings.save_to(model.config)
    return model
