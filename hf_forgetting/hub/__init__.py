"""Forgetting matrices and predictors as Hub dataset repos, one module per job.

- :mod:`.transport`: the Hub client, error classification, and commits that are retried safely
  (each against the head it was checked on; after a lost response, checked for having landed);
- :mod:`.reader`: validated reading of one repo at one commit (listing, sizes, checksums, limits);
- :mod:`.matrix_repo`: the matrix repo layout (header, example ids, one row file per contribution);
- :mod:`.predictor_repo`: the predictor repo layout;
- :mod:`.cards`: dataset cards rendered from the templates in ``templates/``.

Every repo holds one kind of artifact, named by its header (:mod:`hf_forgetting.format`); pushing a
matrix into a predictor repo or the reverse is refused, and no push deletes a file.
"""

from .reader import DownloadLimits, HubRepoError
from .transport import PUSH_ATTEMPTS

__all__ = ["PUSH_ATTEMPTS", "DownloadLimits", "HubRepoError"]
