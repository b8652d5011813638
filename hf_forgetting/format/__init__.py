"""The on-disk and on-Hub file formats, one module per kind of file; nothing here is ever pickled.

- :mod:`.matrix`: forgetting matrices (a header, the example ids, task rows), the same files in a local
  folder and in a Hub dataset repo;
- :mod:`.predictor`: fitted predictors (``predictor.json`` + ``model.safetensors``);
- :mod:`.collect_rows`: one finished task row of a running collection.

Every header names its ``kind``, so that a matrix is never read as a predictor nor pushed over one.
"""

from .matrix import MATRIX_KIND
from .predictor import PREDICTOR_KIND

__all__ = ["MATRIX_KIND", "PREDICTOR_KIND"]
