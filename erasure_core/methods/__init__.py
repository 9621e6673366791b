"""The methods. Trained ones expose `prepare(ctx) -> state` and `train_step(ctx, state) -> info`; UCE is closed-form."""

from . import age, eap, esd

TRAINED_METHODS = {"esd": esd, "eap": eap, "age": age}
