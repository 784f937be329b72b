"""Ray Train jobs: masked pretraining, attentive probes and action-conditioned post-training.

`checkpoints` stores resumable state under the job's output URI, `loop` drives
steps with checkpoint/resume and exact-once metrics, `launch` wires a
`train_loop_per_worker` into a `TorchTrainer`.
"""
