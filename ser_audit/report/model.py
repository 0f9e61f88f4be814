"""The audit report: a versioned pydantic model; ``report.json`` is its JSON form.

Nothing here imports torch, so reports can be read, re-rendered and gated in a light job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from ser_audit.config import AuditConfig

# 1.9: scenario names are exactly P0's (worst, s1-s4), as the design promises: the linear probe and the nested
# choice are `worst` rows told apart by attacker_design (linear-probe, nested-choice), where reports before 1.9 named
# them as scenarios `probe` and `strongest` (read as the same rows);
# 1.8: comparison (audit --compare-with), replacing hardened_model, hardening_effect and hardened_robustness, which
# older reports still carry and still render; 1.7: protection (ser-audit protect); 1.6: environment.device, where
# torch ran; 1.5: how the model was read (model.loading);
# 1.4: one decision per layer (leakage.verdict): leaks / private / inconclusive, read by severity, gates, scores,
# grade and recommendation; 1.3: the run's config and robustness upper bounds; 1.2: balanced accuracy with
# speaker-level intervals and adjusted p-values; 1.1: egemaps_reference
Severity = Literal["none", "low", "medium", "high", "critical"]
REPORT_SCHEMA_VERSION: Literal["1.9"] = "1.9"
Verdict = Literal["leaks", "private", "inconclusive"]

Scenario = Literal["worst", "s1", "s2", "s3", "s4"]
# What a report may hold: a report of 1.9 on writes P0's names only; one before 1.9 is read with its rows renamed.
ScenarioName = Annotated[Scenario, WithJsonSchema({
    "type": "string", "enum": ["worst", "s1", "s2", "s3", "s4", "probe", "strongest"],
    "description": "P0's scenario; probe and strongest only in reports before 1.9 (read as worst rows)."})]
# The two rows per layer that are not one scenario attacker: P0's worst case (the audit corpus's own speakers, the
# layer itself) read by a linear probe, and by the per-fold nested choice among every attacker of the layer.
PROBE_DESIGN, NESTED_CHOICE_DESIGN = "linear-probe", "nested-choice"
# Reports before 1.9 named those two rows by scenarios of their own.
_LEGACY_SCENARIOS = {"probe": PROBE_DESIGN, "strongest": NESTED_CHOICE_DESIGN}


def legacy_scenario(data: Any) -> Any:
    """A row or skipped attack of a report before 1.9 whose scenario is `probe` or `strongest`, read as `worst` with
    the design that tells it apart."""
    if isinstance(data, dict) and data.get("scenario") in _LEGACY_SCENARIOS:
        design = _LEGACY_SCENARIOS[data["scenario"]]
        data = {**data, "scenario": "worst"}
        if "reason" not in data:  # a result row; a skipped attack has no design
            data.setdefault("attacker_design", design)
    return data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Attacked:
    """What a row's scenario and design say together (result rows and their breakdowns)."""

    if TYPE_CHECKING:  # the models' own fields; annotated here, pydantic would make them fields of their own
        scenario: str
        attacker_design: str

    @property
    def is_probe(self) -> bool:
        """The linear probe on the layer's pooled statistics (one per layer, run on every selected layer)."""
        return self.attacker_design == PROBE_DESIGN

    @property
    def is_nested_choice(self) -> bool:
        """The per-fold choice among the layer's attackers by held-out training speakers (the layer's strongest)."""
        return self.attacker_design == NESTED_CHOICE_DESIGN

    @property
    def is_scenario_attacker(self) -> bool:
        """One attacker trained under one of P0's scenarios (neither the probe nor the nested choice)."""
        return not (self.is_probe or self.is_nested_choice)

    @property
    def column(self) -> str:
        """The row's short name where rows stand side by side: its scenario, or probe / strongest for the two
        worst-case rows that are not one scenario attacker."""
        return "probe" if self.is_probe else "strongest" if self.is_nested_choice else self.scenario


class Tool(_Strict):
    name: str = Field("ser-audit", description="Tool name.")
    version: str = Field(description="Tool version that wrote the report.")


class Environment(_Strict):
    python: str = Field(description="Python version.")
    platform: str = Field(description="Operating system and machine.")
    packages: dict[str, str] = Field(description="Versions of the packages that shape the numbers.")
    device: str | None = Field(
        None, description="Where torch ran (1.6 on): the resolved --device (cpu, cuda:N) and a GPU's name. Every "
                          "stage runs there; one that could not (an ONNX graph without onnxruntime's CUDA provider) "
                          "says so in the notes.")


class LayerRow(_Strict):
    index: int = Field(description="Execution order, 0 nearest the input.")
    name: str = Field(description="Layer name as `ser-audit layers` lists it.")
    kind: str = Field(description="Operator or module class.")
    shape: list[int] = Field(description="Output shape for one utterance of the front-end's length.")
    time_axis: int | None = Field(None, description="The axis that grows with the input's duration (read by running "
                                                    "the model at two lengths); null for vectors.")
    frames: int | None = Field(None, description="A frame-batched layer (utterances x frames as its leading axis): "
                                                 "frames per utterance, regrouped as [batch, frames, ...].")
    refused: str | None = Field(None, description="Why the layer cannot be tapped, where it cannot.")


class ModelInfo(_Strict):
    path: str = Field(description="Model as given on the command line.")
    file: str | None = Field(None, description="File the weights were read from.")
    sha256: str = Field(description="sha256 of that file.")
    format: str = Field(description="onnx, torchscript, torch.export or torch.")
    frontend: dict[str, Any] = Field(description="The front-end spec used to feed the model.")
    layers: list[LayerRow] = Field(description="Every tappable layer.")
    training: dict[str, Any] | None = Field(None, description="For reference models: how they were trained and held-out scores.")
    extra_inputs: dict[str, str] = Field(
        default_factory=dict, description="Each further input of the model and what fed it in this run (P4's neutral "
                                          "reference: which utterance of the speaker, never the utterance itself).")
    loading: dict[str, str] = Field(
        default_factory=dict, description="How the model was read where that shapes the figures (a transformers "
                                          "checkpoint: its class, preprocessing, encoder normalisation, padding policy "
                                          "and the transformers version).")


class CorpusInfo(_Strict):
    name: str = Field(description="Corpus name or manifest path.")
    manifest_sha256: str = Field(description="Hash of the labels and audio contents.")
    n_utterances: int
    n_speakers: int
    by_gender: dict[str, int]
    by_emotion: dict[str, int]
    by_speaker: dict[str, int] = Field(default_factory=dict)
    emotions: list[str] = Field(default_factory=list, description="Label vocabulary in order.")
    seed: int | None = Field(None, description="Synthesis seed for synthetic corpora.")
    audio: dict[str, Any] | None = Field(None, description="Sample rates and durations read from the file headers.")


class Accuracy(_Strict):
    """Plain attacker accuracy, P0's column; the leakage statistic is the row's balanced accuracy."""

    mean: float = Field(description="Mean attacker accuracy over speaker-disjoint folds (P0's column).")
    std: float = Field(description="Sample standard deviation over folds.")
    folds: list[float] = Field(description="Accuracy on each fold's held-out speakers.")
    ci_low: float = Field(description="Lower end of the 95% interval of the pooled accuracy (see interval_method).")
    ci_high: float = Field(description="Upper end of that interval.")


class LeakageResult(_Attacked, _Strict):
    layer: str = Field(description="Tapped layer, or `input:lld` for the input-level reference.")
    layer_index: int | None = Field(None, description="Execution-order index of the layer.")
    scenario: ScenarioName = Field(
        description="P0's scenario: worst, s1-s4. The linear probe on pooled statistics and the per-fold nested choice "
        "are worst rows, told apart by attacker_design (reports before 1.9 named them scenarios probe and strongest)."
    )
    attacker_kind: Literal["generic", "aware"] = Field(description="generic: attribute only; aware: attribute + emotion.")
    attacker_architecture: str = Field(description="The attacker's design, in words (layers, sizes, input pooling).")
    attacker_design: str = Field(
        "linear-probe",
        description="Short design name: same-architecture, frozen-body-readout, vgg, resnet, densenet, lstm, gru, mlp, wide, "
        "linear-probe, nested-choice.",
    )
    attacker_family: str = Field("linear", description="convolutional, recurrent, dense, linear, or same-architecture.")
    attacker_parameters: int = Field(description="Trainable parameters of the attacker (last fold).")
    training_data: Literal["same", "aux"] = Field(description="same: audit-corpus folds; aux: the aux corpus.")
    attribute: str = Field(description="The private attribute attacked.")
    accuracy: Accuracy
    balanced_accuracy: float = Field(
        description="The leakage L: mean per-class recall over every held-out prediction (each tested once)."
    )
    balanced_accuracy_folds: list[float] = Field(default_factory=list, description="L on each fold's held-out speakers.")
    ci_low: float | None = Field(None, description="Lower end of L's 95% speaker-level interval (interval_method).")
    ci_high: float | None = Field(None, description="Upper end of that interval.")
    standard_error: float | None = Field(None, description="Speaker-level standard error of L.")
    simultaneous_ci_low: float | None = Field(
        None, description="Lower bound of L, jointly with every row's at 95% (max-T quantile over the rows, at most "
        "Bonferroni's); what `leaks` and the gates compare with their threshold."
    )
    simultaneous_ci_high: float | None = Field(
        None, description="Upper bound of L, jointly over the layers at 95% (a layer is private only when every one "
        "of its rows is under the threshold); what `private` compares."
    )
    interval_method: str | None = Field(None, description="How the intervals were computed (see README, Statistics).")
    chance: float = Field(description="1 / number of classes: L of an attacker that knows nothing.")
    majority_rate: float | None = Field(None, description="Share of the most frequent class among the test labels.")
    p_value: float = Field(description="One-sided p-value of L against chance, unadjusted.")
    p_value_method: str = Field(
        "speaker permutation, attacker refitted", description="How the p-value was computed (see README, Statistics)."
    )
    p_value_exact: bool = Field(
        True, description="False where the p-value approximates a refitting test it could not afford (README)."
    )
    p_value_adjusted: float | None = Field(
        None, description="Adjusted p-value: the larger of its layer's (step-down max-T over layers) and its own within "
        "the layer (max-T over the layer's rows); 1.2-1.3: max-T over every row."
    )
    q_value: float | None = Field(
        None, description="Benjamini-Hochberg q-value over every row: descriptive only, no decision reads it."
    )
    significant: bool | None = Field(None, description="p_value_adjusted < 0.05: a leak after multiplicity control.")
    gap: float = Field(description="L - chance.")
    normalised_leakage: float = Field(description="gap / (1 - chance).")
    n_test: int = Field(description="Test predictions pooled over folds.")
    n_train: int | None = Field(None, description="Training utterances of the attacker (mean over folds).")
    n_features: int = Field(description="Attacker input dimension.")
    reduction: str | None = Field(None, description="How the layer was reduced before the attacker, if at all.")
    severity: Severity | None = Field(
        None, description="none unless significant; then graded by the normalised lower end of the 95% interval, at "
        "least low (README, Statistics)."
    )
    notes: list[str] = Field(
        default_factory=list, description="Caveats a reader needs, e.g. a fold whose training side lacks a class."
    )

    _legacy = model_validator(mode="before")(legacy_scenario)

    @property
    def key(self) -> str:
        return f"{self.layer} / {self.scenario} / {self.attacker_kind} / {self.attacker_design}"


class SkippedAttack(_Strict):
    """An attack that could not run, and why (nothing is skipped silently)."""

    _legacy = model_validator(mode="before")(legacy_scenario)

    layer: str
    scenario: ScenarioName
    attacker_kind: Literal["generic", "aware"]
    reason: str


class BreakdownRow(_Attacked, _Strict):
    """One result row's accuracy on the test utterances of one group."""

    _legacy = model_validator(mode="before")(legacy_scenario)

    layer: str
    scenario: ScenarioName
    attacker_kind: Literal["generic", "aware"]
    attacker_design: str
    group: str = Field(description="The group's value (an emotion, improvised/scripted, a gender).")
    accuracy: float
    n: int
    ci_low: float = Field(description="95% interval resampling the group's speakers (Wilson in reports before 1.2).")
    ci_high: float


class Breakdowns(_Strict):
    by_emotion: list[BreakdownRow] = Field(default_factory=list)
    by_spontaneity: list[BreakdownRow] = Field(default_factory=list)
    by_gender: list[BreakdownRow] = Field(default_factory=list)


class Finding(_Strict):
    """One of P0's findings, checked on this run."""

    name: str = Field(description="Short id, e.g. generic-vs-aware.")
    claim: str = Field(description="What P0 found.")
    reproduced: bool | None = Field(description="Whether this run agrees; null when it cannot tell (missing rows).")
    evidence: str = Field(description="The numbers behind the verdict.")


class Verification(_Strict):
    """Open-set speaker verification from a layer's pooled embeddings (cosine scoring)."""

    layer: str
    layer_index: int | None = None
    eer: float = Field(description="Equal error rate over all trial pairs of held-out speakers.")
    eer_same_gender: float | None = Field(
        None, description="EER with only same-gender non-target trials: identity, not gender."
    )
    eer_ci_low: float | None = Field(None, description="95% speaker-bootstrap interval of the EER (all trials).")
    eer_ci_high: float | None = None
    eer_folds: list[float] = Field(description="EER per speaker-disjoint fold (two halves, stratified by gender).")
    n_target: int = Field(description="Same-speaker trials.")
    n_nontarget: int = Field(description="Different-speaker trials.")
    n_nontarget_same_gender: int | None = Field(None, description="Different-speaker trials of one gender.")


class Recommendation(_Strict):
    layer: str | None = Field(description="Earliest layer under the threshold in every scenario; null if none.")
    threshold: float = Field(description="Leakage threshold applied (attacker accuracy).")
    reason: str = Field(description="Why, in one sentence.")


class AblationRow(_Strict):
    """One layer's leakage under each reference of the neutral-sample ablation."""

    layer: str
    leakage: list[float] = Field(description="The linear probe's leakage L with each reference choice, in order.")
    mean: float = Field(description="Mean of `leakage` over the choices.")
    std: float = Field(description="Sample standard deviation of `leakage` over the choices.")


class ReferenceAblation(_Strict):
    """P4's neutral-sample ablation: a two-input model's leakage and UAR with several fixed references per speaker."""

    choices: list[str] = Field(description="Which neutral utterance fed the reference input in each run.")
    attribute: str = Field(description="The attribute the linear probe predicts.")
    uar_set: str = Field(description="Utterances the emotion UAR is read on.")
    uar: list[float] = Field(description="The model's emotion UAR with each reference choice.")
    uar_mean: float
    uar_std: float = Field(description="Sample standard deviation over the choices.")
    layers: list[AblationRow] = Field(default_factory=list, description="Per selected layer, the linear probe's leakage.")


class LayerVerdict(_Strict):
    """The decision on one layer, from all of its rows at once."""

    layer: str
    layer_index: int | None = None
    verdict: Verdict = Field(description="leaks: significant and its lower bound past the threshold; private: every "
                                         "row's upper bound under it; inconclusive: neither.")
    severity: Severity = Field(description="none unless the layer is significant; else the headline row's severity.")
    headline: str = Field(description="The row behind the figure (layer / scenario / kind / design): the strongest "
                                      "evidence of a leak in a significant layer, else the row nearest the threshold.")
    attacker: str = Field(description="Who achieved the headline: scenario and attacker design.")
    balanced_accuracy: float = Field(description="The headline row's leakage L.")
    ci_low: float | None = Field(None, description="The headline row's 95% interval.")
    ci_high: float | None = None
    chance: float
    p_value_adjusted: float = Field(description="Layer-level: step-down max-T over layers of the layer's rows' "
                                                "largest standardised statistic.")
    significant: bool
    lower_bound: float = Field(description="Largest simultaneous lower bound among the layer's significant rows "
                                           "(chance when none is significant).")
    upper_bound: float = Field(description="Largest simultaneous upper bound among the layer's rows.")
    rows: int = Field(description="Rows of the audit on this layer.")
    attackers: str = Field(description="`every attacker of the run`, or `linear probe only` (a layer the scenario "
                                       "attackers skipped: certified against the probe alone).")
    minimum_detectable_leakage: float | None = Field(
        None, description="The smallest L this corpus would call `leaks` with 80% power, at the headline's spread.")
    speakers_needed: int | None = Field(
        None, description="About how many speakers would decide an inconclusive layer at its current estimate "
                          "(spread shrinking as 1/sqrt(speakers)); null when decided or out of reach.")
    reason: str = Field(description="The verdict in words, with its numbers.")


class LeakageVerdict(_Strict):
    """One decision structure that severity, gates, scores, grade, summary and recommendation all read."""

    verdict: Verdict = Field(description="leaks if any layer leaks; private if every layer is; else inconclusive.")
    statement: str = Field(description="The verdict in one sentence, with what to do next.")
    threshold: float = Field(description="Leakage threshold T of `leaks` and `private` (--max-leakage, chance + "
                                         "--max-gap, else chance + 0.05).")
    alpha: float = Field(0.05, description="Family-wise error rate over layers, for leaks and for private claims each.")
    relabellings: int = Field(description="Speaker relabellings the null distributions were computed on.")
    relabellings_exact: bool = Field(description="Every distinct relabelling was enumerated (the p-values are exact).")
    distinct_relabellings: int = Field(description="How many distinct relabellings the audit's speakers admit.")
    smallest_p_value: float = Field(description="The smallest p-value any row or layer could reach on this corpus.")
    decidable: bool = Field(description="Whether smallest_p_value < alpha: with fewer speakers no leak can be shown.")
    speakers_for_a_verdict: int | None = Field(
        None, description="Where not decidable: the fewest speakers (same class proportions) that could be.")
    layers: list[LayerVerdict] = Field(default_factory=list, description="One decision per layer, in depth order.")


class Leakage(_Strict):
    attribute: str
    folds: list[str] = Field(description="What each fold held out.")
    target_family: str | None = Field(None, description="recurrent, transformer, convolutional or dense (or a "
                                                        "plugin's family), read from the model's graph.")
    seen_speakers: list[str] = Field(
        default_factory=list, description="Audit speakers the target was trained on (known for zoo models); see notes."
    )
    results: list[LeakageResult]
    skipped: list[SkippedAttack] = Field(default_factory=list, description="Attacks that could not run, with the reason.")
    breakdowns: Breakdowns = Field(default_factory=Breakdowns)
    findings: list[Finding] = Field(default_factory=list, description="P0's findings, checked on this run.")
    verification: list[Verification] = Field(default_factory=list, description="Speaker verification EER (attribute speaker).")
    input_reference: LeakageResult | None = Field(None, description="The attribute from the raw audio's LLDs: the ceiling.")
    egemaps_reference: LeakageResult | None = Field(
        None, description="The attribute from eGeMAPS functionals; present where the opensmile extra is installed."
    )
    recommendation: Recommendation | None = None
    verdict: LeakageVerdict | None = Field(None, description="The decision per layer and for the model (1.4 on).")
    reference_ablation: ReferenceAblation | None = Field(
        None, description="Two-input models: leakage and UAR with several neutral references per speaker (P4's ablation).")

    @property
    def references(self) -> list[LeakageResult]:
        """The input-level references this run has (LLDs, then eGeMAPS)."""
        return [r for r in (self.input_reference, self.egemaps_reference) if r is not None]


class RobustnessResult(_Strict):
    method: str = Field(description="Probe: fgsm, pgd, or a plugin probe's registered name.")
    eps: float = Field(description="Perturbation size relative to the spread (std) of the attacked input.")
    eps_raw: float = Field(description="The same in the input's own units.")
    eta: float | None = Field(None, description="FGSM's L-infinity clip around x, relative like eps (P2 eq. 2).")
    domain: Literal["features", "waveform"] = Field(description="Where the perturbation is added.")
    gradient: Literal["white-box", "black-box", "none"] = Field(description="black-box: SPSA gradient estimate.")
    attack_target: Literal["labels", "predictions"] = Field(
        description="Loss taken on the true labels or on the clean predictions."
    )
    targeted_class: str | None = Field(None, description="Target emotion of a targeted probe.")
    steps: int = Field(description="Gradient steps (FGSM 1).")
    uar: float = Field(description="Unweighted average recall under attack (eps 0: clean).")
    accuracy: float
    success_rate: float | None = Field(None, description="Share of originally correct utterances now misclassified.")
    prediction_change_rate: float = Field(description="Share of predictions that changed (confusion shift).")
    recall_by_class: dict[str, float] = Field(default_factory=dict)
    uar_by_gender: dict[str, float] = Field(default_factory=dict)
    mean_linf: float = Field(description="Mean L-infinity norm of the perturbation, input units.")
    mean_l2: float = Field(description="Mean L2 norm of the perturbation, input units.")
    snr_db: float | None = Field(None, description="Signal-to-perturbation ratio (waveform domain).")
    n: int = Field(description="Utterances probed.")


class Robustness(_Strict):
    evaluation_set: str = Field(description="Which utterances were probed.")
    input_spread: float = Field(description="Std of the attacked input over the evaluation set (eps unit).")
    results: list[RobustnessResult] = Field(default_factory=list)
    score: float | None = Field(None, description="100 x area under UAR(eps)/UAR(0) over the FGSM grid.")
    gradient_fallback: str | None = Field(
        None, description="Why the white-box gradient was unavailable (the op or layer); set when FGSM used an SPSA "
                          "estimate, which can only understate vulnerability: the score is then an upper bound.")
    perturbed_input: str = Field(
        "primary", description="The input the probes attacked: primary (the utterance) or reference (a two-input "
                               "model's neutral reference, the utterance left clean).")
    reference: str | None = Field(
        None, description="Which neutral utterance fed a two-input model's reference input (P4), clean or attacked.")


class HardeningEffect(_Strict):
    """Leakage of one layer before and after adversarial training (``audit --hardened``, reports before 1.8)."""

    layer: str
    leakage_before: float
    leakage_after: float
    change: float = Field(description="after - before; positive means hardening increased leakage.")
    significant: bool = Field(description="The two 95% intervals do not overlap.")


class LayerComparison(_Strict):
    """One layer present in both models: the linear probe's leakage L on each, with its 95% interval."""

    layer: str
    leakage_before: float = Field(description="L of the linear probe on MODEL's layer (its `probe` row).")
    before_interval: list[float] | None = Field(None, description="That row's 95% interval.")
    leakage_after: float = Field(description="L of the same probe, trained afresh, on the compared model's layer.")
    after_interval: list[float] | None = Field(None, description="That row's 95% interval.")
    change: float = Field(description="after - before; positive means the compared model leaks more.")
    significant: bool = Field(description="The two 95% intervals do not overlap.")
    verdict_before: Verdict | None = Field(
        None, description="MODEL's verdict on the layer (its `leakage.verdict`: every attacker of the run).")
    verdict_after: Verdict | None = Field(
        None, description="The compared model's verdict on the layer, from the linear probe alone.")


class Comparison(_Strict):
    """``audit --compare-with``: MODEL beside another model (a hardened or protected copy, another version, another
    architecture with the same front-end), on the same corpus, seed and probes (1.8 on).

    Layers are matched by name. The compared model gets the linear probe on every shared layer (not the scenario
    attackers), so `change` compares like with like; its verdicts are certified against the probe alone.
    """

    model: ModelInfo = Field(description="The compared model (--compare-with).")
    layers: list[LayerComparison] = Field(default_factory=list, description="Each of MODEL's tapped layers that the "
                                                                            "compared model has, in MODEL's order.")
    only_in_model: list[str] = Field(default_factory=list, description="MODEL's tapped layers the compared model has "
                                                                       "no tappable layer of that name for.")
    only_in_compared: list[str] = Field(
        default_factory=list, description="Layers the compared model taps (its default taps, or --layers where they "
                                          "resolve there) that MODEL has no layer of that name for.")
    robustness: Robustness | None = Field(None, description="The same robustness probes on the compared model, when "
                                                            "robustness ran.")


class Scores(_Strict):
    privacy: float | None = Field(None, description="0-100, higher is better: 100 x (1 - mean worst normalised leakage).")
    robustness: float | None = Field(None, description="0-100, higher is better: 100 x area under UAR(eps)/UAR(0).")
    grade: str | None = Field(None, description="A-F from the lower of the two scores, capped by the leakage verdict "
                                                "(A only when private, B when inconclusive, C when it leaks); none when "
                                                "the robustness score is only an upper bound (README, Scores).")
    robustness_upper_bound: bool = Field(False, description="The robustness score came from an SPSA gradient estimate: "
                                                            "the true score may be lower.")


class Gate(_Strict):
    name: str = Field(description="Gate flag, e.g. max-leakage.")
    threshold: float
    value: float = Field(description="The measured value compared with the threshold.")
    passed: bool
    detail: str = Field("", description="Which row produced the value.")


class Change(_Strict):
    """One row's value in a baseline report and in this one."""

    key: str = Field(description="Which row: layer / scenario / kind / design, or method / eps / domain.")
    before: float
    after: float
    change: float = Field(description="after - before.")
    verdict: str = Field(
        description="better or worse; same within 0.005, or when the change's interval (leakage rows) holds 0."
    )
    before_interval: list[float] | None = Field(None, description="The baseline row's 95% interval (leakage rows).")
    after_interval: list[float] | None = Field(None, description="This report's row's 95% interval (leakage rows).")
    change_interval: list[float] | None = Field(
        None, description="95% interval of the change from the two rows' speaker-level standard errors, treating the "
        "reports as independent (wider than needed when both tested the same speakers, which correlates them)."
    )


class ReportDiff(_Strict):
    """What got better or worse against a baseline report (``report --baseline``)."""

    baseline_created: str
    baseline_model_sha256: str
    leakage: list[Change] = Field(default_factory=list, description="Leakage (balanced accuracy); lower is better.")
    robustness: list[Change] = Field(default_factory=list, description="UAR under attack; higher is better.")
    scores: list[Change] = Field(default_factory=list, description="Privacy and robustness scores; higher is better.")
    only_before: list[str] = Field(default_factory=list)
    only_after: list[str] = Field(default_factory=list)


class Utility(_Strict):
    """Emotion recognition on the audit speakers: what a protection costs."""

    uar: float = Field(description="Unweighted average recall over the model's emotions.")
    ci_low: float | None = Field(None, description="95% interval of the UAR, resampling speakers (cluster bootstrap).")
    ci_high: float | None = None
    recall_by_class: dict[str, float] = Field(default_factory=dict)
    n: int = Field(description="Utterances scored.")
    evaluation_set: str = Field(description="Which utterances.")


class ProtectionPoint(_Strict):
    """One strength of the sweep: the informed strongest leakage at LAYER against what emotion keeps."""

    strength: float
    description: str = Field(description="What the defense did at this strength.")
    informed: LayerVerdict = Field(description="LAYER's decision from fresh attackers of every scenario trained on "
                                               "the protected copy (the strongest row included).")
    utility: Utility
    uar_drop: float = Field(description="UAR before minus UAR after (positive: emotion got worse).")
    within_budget: bool = Field(description="uar_drop <= max_uar_drop.")
    own_adversary: float | None = Field(
        None, description="The defense's own attribute classifier (balanced accuracy during its last epoch): a "
                          "contrast only, never the result; attackers trained afterwards decide.")


class IgnorantAttack(_Strict):
    """The unprotected model's linear probe, trained per fold on its own layer, applied to the protected layer."""

    layer: str
    balanced_accuracy: float
    ci_low: float | None = Field(None, description="95% speaker-bootstrap interval.")
    ci_high: float | None = None
    chance: float


class Protection(_Strict):
    """``ser-audit protect``: an attribute removed from one layer, judged by attackers trained afterwards (1.7 on)."""

    method: str = Field(description="projection (LEACE, a fixed layer), adversarial (gradient reversal), or a plugin.")
    layer: str
    attribute: str
    trained_on: CorpusInfo = Field(description="The protection's training corpus (--aux-corpus): no audit speaker.")
    data: str = Field(description="The utterances the protection was fitted on.")
    strengths: list[float]
    max_uar_drop: float
    chosen_strength: float | None = Field(
        None, description="The least informed leakage at LAYER within the UAR budget; null when none qualified.")
    verdict: Verdict = Field(description="LAYER's verdict in the informed audit of the written model.")
    statement: str = Field(description="The outcome in one sentence.")
    guarantees: str = Field(description="What the verdict does and does not promise.")
    original_model: ModelInfo
    protected_model: ModelInfo | None = Field(None, description="The written file (null when nothing qualified).")
    utility_before: Utility
    utility_after: Utility | None = None
    before: list[LayerVerdict] = Field(description="Informed decision per tapped layer of the unprotected model.")
    after: list[LayerVerdict] = Field(default_factory=list,
                                      description="The same for the written model (its `leakage` section's verdict).")
    ignorant: list[IgnorantAttack] = Field(default_factory=list)
    tradeoff: list[ProtectionPoint] = Field(description="One point per strength.")


class Report(_Strict):
    """A complete audit: provenance, inputs, results, scores and gate outcomes."""

    schema_version: Literal["1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "1.8", "1.9"] = Field(
        REPORT_SCHEMA_VERSION, description="Version of this schema.")
    tool: Tool
    command: list[str] = Field(description="Command line that produced the report.")
    seed: int
    created: str = Field(description="UTC start time, ISO 8601.")
    finished: str = Field(description="UTC end time, ISO 8601.")
    environment: Environment
    model: ModelInfo
    corpus: CorpusInfo
    aux_corpus: CorpusInfo | None = None
    leakage: Leakage | None = None
    robustness: Robustness | None = None
    comparison: Comparison | None = Field(None, description="audit --compare-with: the same audit of another model, "
                                                            "layer by layer (1.8 on).")
    hardened_model: ModelInfo | None = Field(None, description="Reports before 1.8: the hardened model compared with "
                                                               "(audit --hardened); 1.8 on: comparison.model.")
    hardening_effect: list[HardeningEffect] = Field(default_factory=list,
                                                    description="Reports before 1.8; 1.8 on: comparison.layers.")
    hardened_robustness: Robustness | None = Field(
        None, description="Reports before 1.8: the robustness probes on the hardened model; 1.8 on: "
                          "comparison.robustness."
    )
    protection: Protection | None = Field(None, description="ser-audit protect: the protected layer, before and after.")
    scores: Scores = Field(default_factory=lambda: Scores())
    gates: list[Gate] = Field(default_factory=list)
    baseline: ReportDiff | None = Field(None, description="Changes against a baseline report, when one was given.")
    notes: list[str] = Field(default_factory=list, description="Things the reader should know (cache use, reductions).")
    config: AuditConfig | None = Field(None, description="Every setting of the run, defaults resolved (1.3 on).")

    @property
    def compared(self) -> Comparison | None:
        """The comparison section; a report before 1.8 has its ``audit --hardened`` fields read as one (no
        intervals, no verdicts)."""
        if self.comparison is not None or self.hardened_model is None:
            return self.comparison
        return Comparison(
            model=self.hardened_model, robustness=self.hardened_robustness,
            layers=[LayerComparison(layer=e.layer, leakage_before=e.leakage_before, leakage_after=e.leakage_after,
                                    change=e.change, significant=e.significant) for e in self.hardening_effect])

    @model_serializer(mode="wrap")
    def _leave_out_unused_legacy_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Reports from 1.8 on write `comparison` only: the fields it replaced appear only where an older report
        filled them."""
        data = handler(self)
        if isinstance(data, dict):
            for key in _LEGACY:
                if key in data and not data[key]:
                    del data[key]
        return data


# Fields `comparison` replaced in 1.8, kept so that older reports load and render.
_LEGACY = ("hardened_model", "hardening_effect", "hardened_robustness")
