"""Baseline DFER models, one module per family, registered into the shared registry on import.

Families (registry names): ``former_dfer`` (+``_tiny``), ``c3d`` (+``_tiny``), ``resnet3d``
(``r3d18_hara``, +``_tiny``), ``tv_video`` (``r3d_18``, ``mc3_18``, ``r2plus1d_18``),
``resnet_lstm`` (``resnet18_lstm``, +``_tiny``), ``timm_frames`` (``timm_frames``, +``_tiny``,
``timm_vit_tiny``) and ``static`` (``static_control``). Every model takes ``(B, C, T, H, W)``
float in [0, 1] and returns logits ``(B, K)``; local pretrained weights load through
:mod:`baselines.weights`.
"""

from baselines import c3d, former_dfer, resnet3d, resnet_lstm, static, timm_frames, tv_video  # noqa: F401

#: modules whose registrations are baselines (tests parametrise over these families)
FAMILY_MODULES = ("former_dfer", "c3d", "resnet3d", "tv_video", "resnet_lstm", "timm_frames", "static")
