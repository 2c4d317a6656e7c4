"""The mathematics of THEORY.md §1–4: network, truncation maps, adapted weights, costs, flows.

- x^(ℓ) = σ(W_ℓ x^(ℓ-1) + b_ℓ); cumulative W^(ℓ), b^(ℓ) and back (§1)   → :mod:`.network`
- the same passes on stacked arrays, unvalidated (shared by every module)  → :mod:`.kernels`
- τ_{W,b}(x) = W^-1(σ(Wx + b) − b), x^(τ,ℓ), patterns, apex (§1)         → :mod:`.truncation`
- W^(ℓ) = Λ_ℓ R_ℓ, thresholds θ = −Λ^-1 b, cone projections (§2)         → :mod:`.adapted`
- C_in, C_out, pulled-back targets (§3)                                    → :mod:`.costs`
- threshold gradient (4.1), flows (4.2)–(4.5), the bias chain J and K = JJᵀ (§4) → :mod:`.flows`
- clustered synthetic data                                                 → :mod:`.data`
- any widths: truncation counts, dead units, frozen points, N_eff, W⁺ maps; NC1–NC4 → :mod:`.generic`, :mod:`.collapse`
"""
