"""``report_to`` for the PPO trainer through transformers' own callback machinery.

Every integration transformers supports (tensorboard, wandb, mlflow, comet_ml, trackio, …) is a
``TrainerCallback``; :class:`TrainerReporting` builds them with ``get_reporting_integration_callbacks``
and drives them with a ``CallbackHandler`` and a ``TrainerState`` (one "global step" = one PPO
iteration), exactly as ``Trainer`` does. User ``TrainerCallback`` objects join the same handler;
setting ``control.should_training_stop`` in one of them ends training after the current iteration.
"""

from __future__ import annotations

__all__ = ["TrainerReporting", "split_callbacks"]


def split_callbacks(callbacks) -> tuple[list, list]:
    """(``TrainerCallback`` objects or classes, plain callables ``f(trainer, stats)``)."""
    from transformers import TrainerCallback

    trainer_callbacks, functions = [], []
    for callback in callbacks or []:
        is_class = isinstance(callback, type) and issubclass(callback, TrainerCallback)
        (trainer_callbacks if is_class or isinstance(callback, TrainerCallback) else functions).append(callback)
    return trainer_callbacks, functions


class TrainerReporting:
    """The integrations of ``args.report_to`` plus user callbacks, fed like ``Trainer`` feeds them."""

    def __init__(
        self, args, model, processing_class, optimizer, lr_scheduler, callbacks, is_main_process: bool, max_steps: int
    ):
        from transformers.integrations import get_reporting_integration_callbacks
        from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback, TrainerControl, TrainerState

        integrations = get_reporting_integration_callbacks(args.report_to)
        self.args = args
        # DefaultFlowCallback first, as in Trainer (it stops training at max_steps; the loop ends there anyway).
        callbacks = [DefaultFlowCallback, *integrations, *callbacks]
        self.handler = CallbackHandler(callbacks, model, processing_class, optimizer, lr_scheduler)
        self.state = TrainerState(is_local_process_zero=is_main_process, is_world_process_zero=is_main_process)
        self.state.max_steps = max_steps
        self.control = TrainerControl()

    def train_begin(self, step: int) -> None:
        self.state.global_step = step
        self.control = self.handler.on_train_begin(self.args, self.state, self.control)

    def step_end(self, step: int) -> bool:
        """Returns True when a callback asked training to stop."""
        self.state.global_step = step
        self.control = self.handler.on_step_end(self.args, self.state, self.control)
        return bool(self.control.should_training_stop)

    def log(self, step: int, logs: dict) -> None:
        self.state.global_step = step
        self.state.log_history.append({**logs, "step": step})
        self.control = self.handler.on_log(self.args, self.state, self.control, logs)

    def save(self, step: int) -> None:
        self.state.global_step = step
        self.control = self.handler.on_save(self.args, self.state, self.control)

    def train_end(self) -> None:
        self.control = self.handler.on_train_end(self.args, self.state, self.control)
