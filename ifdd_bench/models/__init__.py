"""Model families of the toolkit: shared layers, the MViT backbone, IFDD.

Importing this package imports nothing, so torch-free code (the report) can read
``ifdd_bench.models.ifdd_config``; the registry imports ``ifdd_bench.models.ifdd`` to register the
IFDD presets.
"""
