"""eGeMAPS v02 functionals (88 per utterance) from openSMILE, the optional ``opensmile`` extra.

openSMILE's licence is non-commercial, so nothing in ser-audit needs it: where it is not
installed, ``egemaps_functionals`` raises a ConfigError saying how to add it, and the
audit leaves the eGeMAPS input reference out with that as a note.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ser_audit.corpus.audio import read_audio
from ser_audit.corpus.interface import Corpus
from ser_audit.errors import ConfigError
from ser_audit.progress import NULL_OBSERVER, ProgressObserver

SAMPLE_RATE = 16_000
INSTALL_HINT = "pip install 'ser-audit[opensmile]' (openSMILE's licence is non-commercial)"


def opensmile_module() -> Any:
    """The opensmile package, or a ConfigError that says how to install it."""
    try:
        import opensmile
    except ImportError:
        raise ConfigError(f"the eGeMAPS reference needs openSMILE, which is not installed; run: {INSTALL_HINT}") from None
    except OSError as error:  # installed, but its native library does not load here
        raise ConfigError(f"openSMILE is installed but cannot load ({error}); reinstall it: {INSTALL_HINT}") from None
    return opensmile


def feature_version() -> str:
    """What the functionals depend on besides the audio, for cache keys."""
    return f"eGeMAPSv02 functionals, opensmile {opensmile_module().__version__}, {SAMPLE_RATE} Hz"


def egemaps_functionals(corpus: Corpus, observer: ProgressObserver = NULL_OBSERVER) -> np.ndarray:
    """One row of eGeMAPS v02 functionals per utterance, read at 16 kHz mono (about 90 ms each on a CPU core)."""
    opensmile = opensmile_module()
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)
    rows = []
    with observer.task("eGeMAPS functionals (input reference)", total=len(corpus)) as task:
        for utterance in corpus:
            signal = read_audio(utterance.path, SAMPLE_RATE)
            rows.append(smile.process_signal(signal, SAMPLE_RATE).to_numpy(dtype=np.float64)[0])
            task.advance()
    # A silent stretch can leave a functional undefined; it then carries no information.
    return np.nan_to_num(np.stack(rows), nan=0.0, posinf=0.0, neginf=0.0)
