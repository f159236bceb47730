"""Initialisation schemes (``model.init``), by name: the one list the config accepts and
:func:`prunescope.models.registry.reinitialise` applies (kept free of torch, so the config
schema can read it).

IMP ranks magnitudes that, with an early rewind point, still carry the initial scale, so
the scheme can decide which layers are pruned first: He init scaled by fan-out (this
project's default, as torchvision's ResNets) gives the stem and stride-2 convolutions
small weights; by fan-in (OpenLTH) it does not.
"""

INITS = {
    "fan_out": "He-normal convolutions scaled by fan-out (the built-in models' own)",
    "fan_in": "He-normal convolutions scaled by fan-in (OpenLTH)",
    "torch_default": "every Conv/Linear/BatchNorm as PyTorch creates it (Kaiming-uniform, a=sqrt 5)",
}
