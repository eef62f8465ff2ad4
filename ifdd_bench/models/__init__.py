"""Model families of the toolkit. Importing this package registers every model."""

from ifdd_bench.models.output import ModelOutput, unpack_output  # noqa: F401
import ifdd_bench.models.ifdd  # noqa: F401,E402  (registers ifdd, ifdd_tiny)
