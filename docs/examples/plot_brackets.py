"""
Lie brackets of training examples on a small MLP
================================================

Two SGD steps of size ``ε`` on examples ``a`` and ``b`` do not commute:
``θ_ab − θ_ba = ε² [v_a, v_b] + O(ε³)``. This example checks that identity
with :func:`fastperm.lie.swap_difference` (two literal steps in each order)
against the fused bracket kernel, :func:`fastperm.lie.brackets`, and then
relates the size of the brackets to the size of the gradients, tensor by
tensor, with :func:`fastperm.lie.tensor_rms`.

The model is ``MLP([8, 16, 3])`` (tanh hidden layer, three independent
sigmoid outputs, mean binary cross-entropy) on twelve random examples.
"""

import matplotlib.pyplot as plt
import numpy as np

from fastperm import lie, models

rng = np.random.default_rng(0)
model = models.MLP([8, 16, 3])
X = rng.standard_normal((12, 8))
Y = (rng.random((12, 3)) < 0.3).astype(float)
theta = model.init(seed=0)

# %%
# The swap identity
# -----------------
# All 66 brackets of the 12 examples in one call, then the relative error of
# ``swap_difference / ε²`` against the bracket of the first pair: it falls like
# ``O(ε)``. The finite-difference brackets themselves are compared with the
# exact complex-step brackets.

B = lie.brackets(model, theta, X, Y)  # (12, 12, P), antisymmetric
exact = lie.exact_brackets(model, theta, X, Y)
print(
    f"P = {model.P} parameters; brackets {B.shape}; "
    f"max FD error vs complex step: {np.abs(B - exact).max() / np.abs(exact).max():.1e}"
)

lrs = np.logspace(-4, -1, 7)
b01 = B[0, 1]
swap_err = [
    np.linalg.norm(lie.swap_difference(model, theta, (X[0], Y[0]), (X[1], Y[1]), lr) / lr**2 - b01)
    / np.linalg.norm(b01)
    for lr in lrs
]

# %%
# Bracket size against gradient size
# ----------------------------------
# Checkpoints along full-batch gradient descent (NumPy gradients of the model),
# then, for every pair and checkpoint, the RMS of the bracket and of the two
# gradients within each named tensor (``W1``, ``b1``, ``W2``, ``b2``), with a
# least-squares line on log-log axes.

checkpoints, th = [], theta.copy()
for step in range(801):
    if step % 100 == 0:
        checkpoints.append(th.copy())
    th -= 0.5 * model.grad(th, X, Y).mean(axis=0)
rms = lie.tensor_rms(model, checkpoints, X, Y)
print(rms.summary())

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
ax0.loglog(lrs, swap_err, "o-", label="‖swap / ε² − [v_a, v_b]‖ / ‖[v_a, v_b]‖")
ax0.loglog(lrs, 0.3 * swap_err[-1] * lrs / lrs[-1], "k:", label="∝ ε (offset)")
ax0.set_xlabel("step size ε")
ax0.set_ylabel("relative difference")
ax0.set_title("swap_difference / ε² → brackets", fontsize=10)
ax0.legend(frameon=False, fontsize=9)

for name in model.tensors:
    g, b = rms.rms_grad[name].ravel(), rms.rms_bracket[name].ravel()
    ax1.loglog(
        g,
        b,
        ".",
        ms=3,
        alpha=0.6,
        label=f"{name}: slope {rms.slope[name]:.2f}, r = {rms.corr[name]:.2f}",
    )
ax1.set_xlabel("RMS gradient in the tensor")
ax1.set_ylabel("RMS bracket in the tensor")
ax1.set_title(f"{len(checkpoints)} checkpoints × {len(rms.pairs)} pairs", fontsize=10)
ax1.legend(frameon=False, fontsize=9)
plt.show()
