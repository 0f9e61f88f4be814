"""P4's random crops and neutral references, under their earlier import path.

They now live in :mod:`ser_audit.frontend.inputs`, the one corpus → model inputs pipeline (which the
front-end layer can import and the model layer builds on); these names stay importable from here.
"""

from __future__ import annotations

from ser_audit.frontend.inputs import REFERENCE_CHOICE as REFERENCE_CHOICE
from ser_audit.frontend.inputs import CorpusAudio as CorpusAudio
from ser_audit.frontend.inputs import describe_choice as describe_choice
from ser_audit.frontend.inputs import fallback_count as fallback_count
from ser_audit.frontend.inputs import random_crop as random_crop
from ser_audit.frontend.inputs import reference_candidates as reference_candidates
from ser_audit.frontend.inputs import reference_rows as reference_rows
