"""The AC law: fit a benchmark score on alignment (A) and correspondence (C), plot it, and
simulate the AC policy that picks which encoders to finetune.

Modules: ``tables`` (scores tables in), ``fit`` (least squares, R², leave-one-out, bootstrap),
``region_sampler`` (the paper's AC policy: region sampling, its simulation and
recommendation), ``policy_mode`` (the workflow's ``targets: [policy]``: rounds, picks, reports),
``plot`` (figures), ``report`` (a run's ``law/`` folder), ``cli`` (``python -m vislaw.law``).
"""
