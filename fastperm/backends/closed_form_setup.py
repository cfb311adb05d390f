"""NumPy set-up and finish shared by the compiled k = ∞ drivers of cyclic shifts and block
permutations (``numba_cpu/closed_forms.py``, ``_cython/closed_forms.pyx``): the twins
differ only in their per-step loops, which take the arrays prepared here. Derivations:
:mod:`fastperm.backends.numba_cpu.closed_forms`.
"""

from __future__ import annotations

import numpy as np

from ..moments import block_moments, circulant_spectrum


def fourier_setup(X, w_star, W0, R):
    """Half-spectrum state of R cyclic-shift runs: ``(lam, s1, RE, IM, sre, sim, wt)``.

    ``lam[i]`` are example i's eigenvalues |x̂_i|²/d, ``s1[i] = Σx_i`` (the f = 0 mean
    term), ``RE + i·IM`` the runs' ŵ (updated in place by the loops), ``sre + i·sim`` = ŵ*,
    ``wt`` the Parseval weights of the half spectrum (1 at f = 0 and at d/2, else 2).
    """
    d = X.shape[1]
    lam = np.ascontiguousarray(circulant_spectrum(X))
    Wf = np.fft.rfft(np.broadcast_to(W0, (R, d)), axis=1)
    sf = np.fft.rfft(w_star)
    F = lam.shape[1]
    wt = np.full(F, 2.0)
    wt[0] = 1.0
    if d % 2 == 0:
        wt[F - 1] = 1.0
    return (
        lam,
        np.ascontiguousarray(X.sum(axis=1)),
        np.ascontiguousarray(Wf.real),
        np.ascontiguousarray(Wf.imag),
        np.ascontiguousarray(sf.real),
        np.ascontiguousarray(sf.imag),
        wt,
    )


def fourier_finish(RE, IM, w_out):
    """``w_out[r]`` = the inverse transform of run r's ŵ (the last axis is the spectrum's:
    also ``w_rec[r, q]`` from the spectra kept at the records)."""
    if w_out.size:
        w_out[:] = np.fft.irfft(RE + 1j * IM, n=w_out.shape[-1], axis=-1)


def kept_start(w_rec, W0):
    """Record 0 of the kept parameters is the start itself (not its round trip through a
    transformed state), as the kernels that keep w explicitly record it."""
    if w_rec.shape[1]:
        w_rec[:, 0] = W0


def fourier_finish_kept(RE_rec, IM_rec, w_rec, W0):
    """``w_rec[r, q]`` from the spectra kept at the records (record 0: the start)."""
    fourier_finish(RE_rec, IM_rec, w_rec)
    kept_start(w_rec, W0)


def spectra_kept(w_rec, F):
    """``(RE_rec, IM_rec)``, (R, m, F) each: where a run's ŵ is kept at its records (m = 0
    when no parameters are kept)."""
    shape = (w_rec.shape[0], w_rec.shape[1], F)
    return np.zeros(shape), np.zeros(shape)


class BlockState:
    """Set-up of R block-permutation runs (groups ``gidx[gptr[g]:gptr[g + 1]]``).

    Per example and group (n, G): ``a = s2/d_G − c``, ``c``, ``mg`` = the block means of x;
    per group: ``size``, ``ustar`` (block means of w*), ``Wss`` (centred w* squared); per run
    (R, G): ``U``, ``V`` (centred w0 squared, times centred w*), the scale ``ALPHA`` of the
    centred part and the deviation ``DELTA`` of the block means from w*'s (updated in place).
    """

    def __init__(self, X, w_star, W0, R, gidx, gptr, records=0):
        n, d = X.shape
        G = gptr.shape[0] - 1
        self.labels = np.empty(d, dtype=np.int64)
        for g in range(G):
            self.labels[gidx[gptr[g] : gptr[g + 1]]] = g
        onehot = np.zeros((d, G))
        onehot[np.arange(d), self.labels] = 1.0
        self.size, mg, diag, c = block_moments(X, self.labels, G)
        self.a = np.ascontiguousarray(diag - c)
        self.c = np.ascontiguousarray(c)
        self.mg = np.ascontiguousarray(mg)
        W0r = np.broadcast_to(W0, (R, d))
        self.W0 = W0r
        mean0 = (W0r @ onehot) / self.size
        self.ustar = (w_star @ onehot) / self.size
        self.u = W0r - mean0[:, self.labels]
        v = w_star - self.ustar[self.labels]
        self.U = np.ascontiguousarray((self.u * self.u) @ onehot)
        self.V = np.ascontiguousarray((self.u * v) @ onehot)
        self.Wss = (v * v) @ onehot
        # with a constant block in w0 its centred part stays zero: α plays no role there
        self.ALPHA = np.where(self.U > 0.0, 1.0, 0.0)
        self.DELTA = np.ascontiguousarray(mean0 - self.ustar)
        # α and δ at the recorded steps, when the parameters there are kept (records > 0)
        self.ALPHA_rec = np.zeros((R, records, G))
        self.DELTA_rec = np.zeros((R, records, G))

    def finish(self, w_out, w_rec):
        """``w = α_G u + δ_G + μ*_G`` per group: ``w_out[r]`` from the final ALPHA and DELTA,
        ``w_rec[r, q]`` from those kept at the records."""
        w_out[:] = self.ALPHA[:, self.labels] * self.u + (self.DELTA + self.ustar)[:, self.labels]
        if w_rec.size:
            w_rec[:] = (
                self.ALPHA_rec[:, :, self.labels] * self.u[:, None, :]
                + (self.DELTA_rec + self.ustar)[:, :, self.labels]
            )
            kept_start(w_rec, self.W0)
