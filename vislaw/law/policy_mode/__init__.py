"""The policy mode (``targets: [policy]``): finetune only the encoders the law says are worth it.

Every encoder has A (stage 1 only) and C. Round r reads the scores of the encoders finetuned so
far (the policy's earlier picks, plus any supplied in ``policy.scores_file``), fits the law per
benchmark (Bayesian linear regression, :mod:`vislaw.law.strategies`), ranks the encoders by
the weighted mean of their normalised scores and either picks ``policy.per_round`` encoders to
finetune next or stops. Each round is one small JSON (``policy/rounds/<r>.json``), so a re-run
continues from the last one; ``policy/rounds.csv``, ``recommendation.md`` and
``predicted_vs_measured.png`` gather them.

Stop rule (in this order): ``budget`` (the policy has ordered ``policy.budget`` finetunes);
``all finetuned``; ``settled``: at least ``policy.min_finetunes`` encoders are measured, the
top-ranked encoder is one of them, and no unmeasured encoder's upper bound (posterior mean +
``policy.stop_z`` sd of the weighted score) reaches the best measured weighted score.

Modules, one job each: :mod:`.state` (the scores a round sees: :class:`PolicyState`),
:mod:`.decide` (the round's ranking, picks and stop rule), :mod:`.rounds` (the round record
:class:`RoundDecision`, its JSON and rounds.csv), :mod:`.markdown` (recommendation.md),
:mod:`.figure` (predicted_vs_measured.png) and :mod:`.outputs` (the report rule's three files).
The paper's region sampler, which this mode can use as one strategy, is
:mod:`vislaw.law.region_sampler`.
"""
