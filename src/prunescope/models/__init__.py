"""Models and their stages. Importing this package registers every architecture."""

from prunescope.models import regnet, resnet, vgg  # noqa: F401  (registration)
from prunescope.models.registry import (
    PRUNABLE_TYPES,
    ModelSpec,
    build_model,
    count_parameters,
    model_names,
    model_spec,
    prunable_layers,
    register_model,
    stage_of_layer,
)

__all__ = [
    "PRUNABLE_TYPES",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "model_names",
    "model_spec",
    "prunable_layers",
    "register_model",
    "stage_of_layer",
]
