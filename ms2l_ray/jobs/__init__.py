"""The job layer, on Ray: every pretrain and evaluation runs as a Ray Train ``TorchTrainer`` job.

Read it bottom-up, one file a layer: :mod:`.spec` (what a job is, picklable), :mod:`.worker` (layer 1: the
per-worker loop each Train worker runs), :mod:`.driver` (layer 2: builds and fits the ``TorchTrainer``),
:mod:`.tracked` (layer 3: a job with its MLflow runs), and :mod:`.cluster` / :mod:`.records` (connecting to
Ray, job records for ``--resume``).
"""
