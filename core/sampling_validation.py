"""A render request's scheduler and LoRA adapters, checked against its model and style."""

from __future__ import annotations

from core.config import ClusterConfig, ModelConfig
from core.errors import RequestError
from core.lora_options import ChosenLoras
from core.sampling_options import SamplingChoiceError, chosen_sampling
from core.schemas import RenderRequestBody

__all__ = ["sampling_fields"]


def sampling_fields(
    body: RenderRequestBody, config: ClusterConfig, model_name: str, model: ModelConfig
) -> dict[str, str | None | ChosenLoras]:
    """The `scheduler` (None: the model's own) and `loras` a render uses, as fields of its
    `GenerateRequest` or `LargeRenderJob`; `RequestError` naming the field when the model
    does not allow them. Without `loras` in the request, the style's `style_loras` apply
    when the style routes to this model."""
    if body.mode == "fused":
        for name in ("scheduler", "loras"):
            if getattr(body, name) is not None:
                raise RequestError(
                    name, "fused renders use the model's own scheduler and fused adapters only"
                )
        return {"scheduler": None, "loras": ()}
    choices = body.loras
    style = body.style or (config.default_style if body.model is None else None)
    if choices is None and style is not None and config.styles.get(style) == model_name:
        choices = config.style_loras.get(style)
    try:
        scheduler, loras = chosen_sampling(body.scheduler, choices, model)
    except SamplingChoiceError as exc:
        raise RequestError(exc.field, str(exc)) from None
    return {"scheduler": scheduler, "loras": loras}
