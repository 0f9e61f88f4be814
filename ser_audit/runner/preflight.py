"""The corpus's audio against the model, before any long work.

Floating-point files must hold finite samples (integer PCM cannot hold anything else); audio
shorter than one analysis window is zero-padded to one frame by the front-end, and the report
says which, as it says when the corpus mixes sample rates; and a variable-length model must run
on the shortest utterance: the layer listing ran it on 1 s of audio, but its pooling may need
more frames than a short utterance gives, and that should fail now, naming the utterance, not in
the middle of a run.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ser_audit.corpus.audio import scan_audio
from ser_audit.corpus.interface import Corpus
from ser_audit.errors import ModelError

if TYPE_CHECKING:
    from ser_audit.frontend.spec import FrontEndSpec
    from ser_audit.models.interface import TargetModel


def window_seconds(spec: "FrontEndSpec") -> float:
    """One analysis window of a front-end, in seconds (0 for waveform models)."""
    features = spec.features
    return 0.0 if features.kind == "waveform" else max(features.n_fft, features.win_length or 0) / spec.sample_rate


def audio_notes(model: "TargetModel", corpus: Corpus, *, also: Sequence["FrontEndSpec"] = ()) -> list[str]:
    """Check the audio against ``model`` (and the front-ends in ``also``, such as the LLD reference's);
    returns the notes for the report.

    Raises:
        CorpusError: a file holds NaN or infinite samples.
        ModelError: the shortest utterance is too short for a variable-length model.
    """
    headers = scan_audio((u.id, u.path) for u in corpus)
    if not headers:
        return []
    durations = {identifier: seconds for identifier, (seconds, _) in headers.items()}
    check_shortest(model, durations)
    notes = rate_notes(corpus, {identifier: rate for identifier, (_, rate) in headers.items()}, model.frontend.sample_rate)
    seconds = max(window_seconds(spec) for spec in (model.frontend, *also))
    short = [identifier for identifier, duration in durations.items() if duration < seconds]
    if short:
        shown = ", ".join(short[:5]) + (f" and {len(short) - 5} more" if len(short) > 5 else "")
        notes.append(f"{len(short)} utterance(s) of {corpus.name} are shorter than one analysis window "
                     f"({seconds * 1000:.0f} ms) and were zero-padded to it: {shown}")
    return notes


def rate_notes(corpus: Corpus, rates: dict[str, int], model_rate: int) -> list[str]:
    """A corpus that mixes sample rates is resampled file by file; where the rate follows the gender, what
    resampling leaves behind (a band limit, its ripple) can pass for the attribute."""
    counts = Counter(rates.values())
    if len(counts) < 2:
        return []
    genders: dict[int, set[str]] = {}
    for utterance in corpus:
        if utterance.id in rates:
            genders.setdefault(rates[utterance.id], set()).add(utterance.gender)
    mixed = ", ".join(f"{rate} Hz: {count} file(s)" for rate, count in sorted(counts.items()))
    note = f"{corpus.name} mixes sample rates ({mixed}); every file was resampled to the model's {model_rate} Hz"
    if all(len(held) == 1 for held in genders.values()) and len(set().union(*genders.values())) > 1:
        note += ("; each rate holds one gender only, so what resampling leaves behind can pass for gender: "
                 "re-export the corpus at one rate before trusting a leak")
    return [note]


def check_shortest(model: "TargetModel", durations: dict[str, float]) -> None:
    """A variable-length model runs on silence as long as the shortest utterance (cropped or padded
    inputs all have the spec's length, which the layer listing ran already)."""
    import torch

    from ser_audit.frontend.features import FrontEnd

    spec = model.frontend
    if spec.num_samples is not None:
        return
    identifier, seconds = min(durations.items(), key=lambda item: item[1])
    samples = max(1, int(round(seconds * spec.sample_rate)))
    if samples >= spec.sample_rate:  # the layer listing ran 1 s
        return
    with torch.no_grad():
        features = FrontEnd(spec)(torch.zeros(1, samples)).numpy()
    try:
        model.forward({name: np.ascontiguousarray(features) for name in model.input_names})
    except (RuntimeError, ValueError) as error:
        raise ModelError(
            f"model {model.path or 'in memory'} cannot run on utterance {identifier!r}: {samples} samples "
            f"({seconds:.3f} s) are too short for it ({str(error).splitlines()[0][:160]}); remove such utterances "
            "from the manifest or give the model a fixed duration_s in its front-end spec"
        ) from None
