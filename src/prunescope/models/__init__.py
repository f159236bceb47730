"""Models and their stages. Importing this package registers every architecture."""

from prunescope.models import gcn, gpt, mlp, regnet, resnet, vgg, vit  # noqa: F401
from prunescope.models.registry import (
    PRUNABLE_TYPES,
    ModelInputs,
    ModelSpec,
    build_for,
    build_model,
    count_parameters,
    is_user_model,
    model_names,
    model_spec,
    prunable_layers,
    register_model,
    stage_of_layer,
)

__all__ = [
    "PRUNABLE_TYPES",
    "ModelInputs",
    "ModelSpec",
    "build_for",
    "build_model",
    "count_parameters",
    "is_user_model",
    "model_names",
    "model_spec",
    "prunable_layers",
    "register_model",
    "stage_of_layer",
]
