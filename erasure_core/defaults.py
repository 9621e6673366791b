"""Default hyperparameters of every method: the one table the configs, the CLI and the hosts read.

Each row names its source. "ref" = the authors' reference code and run scripts as summarised in
`shared/reference/algorithms.md` (section numbers given); "ours" = a choice of this project, with the reason.
The papers fine-tune the full weights of a layer subset; we train a LoRA on the same subset, so the learning
rate is ours (LoRA needs a larger step than a full-weight fine-tune) while everything that shapes the objective
follows the reference.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

REFERENCE_DDIM_STEPS = 50  # ref §1
# ours: whole-word tokens of the model's own tokenizer, in token-id order, at most this many (ref: EN3K, 3000
# common English words). 20000 covers nearly every whole word of BERT-style vocabularies and the most frequent
# two thirds of CLIP's; with 5000, concrete nouns such as "banana" (BERT id order) are missing.
VOCABULARY_LIMIT = 20000
# ours: AGE's target as the audit and the stopping check measure it: this many candidates drawn from the learned
# distribution, as training steps draw them, each weighted by how often it was drawn (an unbiased estimate of the
# target training steers to; the top 5 renormalised overstated the leaders of a still spread distribution). At most
# this many extra conditionings per latent in each check.
AGE_TARGET_DRAWS = 16
# ours: what ESD's `"ddim_steps": "auto"` takes where the latent pool serves the latents (see the ESD row).
POOL_DDIM_STEPS = 25

_COMMON: dict[str, Any] = {
    # What gets trained.
    "layers": "xattn",  # ref §1: ESD-x / EAP / AGE objects and artists train cross-attention.
    "rank": 4,  # ours: rank 4 is LECO's and sliders' default for concept LoRAs.
    "alpha": 4.0,  # ours: alpha = rank, so the LoRA scale is 1 and the file behaves the same in every loader.
    # ours: half the reference's 1000 parameter iterations (ref §1, §2.5) at twice our LoRA step (the reference
    # uses 1e-5 on full weights), the same Adam path length: on the miniature world at the SD step count ESD, EAP
    # and AGE stayed within 2 points of the faithful 1000 iterations (docs/speed.md, "Fewer steps"). 250 held on one
    # seed, but five concepts in 250 steps are too few for the latent pool. LECO's concept LoRAs train 500 too.
    "lr": 2e-4,
    "steps": 500,
    "batch_size": 1,  # ref §1: batch size 1.
    "seed": 0,  # ours
    # How the training latents x_t are produced (ref §1, "per-iteration training sample").
    "sample_guidance": 3.0,  # ref §1: CFG 3 during partial DDIM sampling ("start_guidance").
    "ddim_steps": REFERENCE_DDIM_STEPS,  # ref §1: 50-step uniform DDIM schedule, index drawn uniformly.
    "reference_timestep_offset": False,  # ours: the clean version; True reproduces the ~2-step quirk of ref §1.4.
    # ours: the latent pool (erasure_core/latent_pool.py). "auto" uses it, with POOL_AUTO_REFRESHES refreshes, only
    # for the POOL_AUTO_LAYERS and where each stored trajectory serves at least POOL_AUTO_MIN_REUSE training latents,
    # i.e. where its sampling costs at most about a quarter of the reference's per-step sampling; elsewhere every
    # latent is sampled fresh.
    # On the miniature world (docs/speed.md, "The latent pool") the pool matched fresh sampling with one concept per run
    # and at 1000 steps, but made a weaker ESD edit when five concepts share 100 steps, where it also saves nothing.
    "pool_trajectories": 2,
    "pool_refreshes": "auto",
    "pool_model": "current",
    # ours: every latent from the pool, the noisiest included; on the miniature world ESD and EAP kept their quality
    # without fresh ones (docs/speed.md, "The latent pool"), which at SD's 1000 steps cost EAP 40% of its UNet evaluations.
    "pool_fresh_steps": 0,
    # ours: at SD sizes a GPU spends most of an eager no-gradient forward waiting for Python to launch kernels
    # (benchmarks/speed.py); replaying captured graphs removes that. Ignored on CPU and by backends without support.
    "cuda_graphs": True,
    # The erasure objective.
    "negative_guidance": 1.0,  # ref §1: eta = 1 in EAP/AGE runs (the new ESD code uses 2).
    "anchor": "",  # ref §1: the unconditional prompt is ESD's anchor.
    "loss_space": "eps",  # ref §1: ESD's loss is in noise space.
    "keep_weight": 1.0,  # ours: weight of the preservation term for concepts the user keeps (ESD-preserve form, ref §1).
    # ours: keep this many of each erased concept's nearest words by the text encoder that the model does not draw as
    # the concept (erasure_core/neighbours.py), with the keep term; 0 = off (opt-in until measured on both worlds).
    "guard_neighbours": 0,
    # ours, after AdvUnlearn (Zhang et al., 2024): off by default, as there; 4 context positions and the relative
    # rate the attack audit's soft attack uses (erasure_core/attack.py), its term weighted as the concept's own.
    "robust": False,
    "robust_tokens": 4,
    "robust_lr": 0.05,
    "robust_weight": 1.0,
    # ours: when to stop (erasure_core/monitor.py). Every `check_every` steps the erasure of each erased concept is
    # measured on `check_samples` fixed latents per concept (the audit's score); training stops once every concept
    # reaches `erased_at`, and `steps` is then the budget. A step count tuned on one model means nothing on the next.
    # erased_at: the smallest of 0.6/0.7/0.8 with ESR-1 >= 99 on the objects world's choosing concepts
    # (benchmarks/miniworld/stopping_study.sh; 0.8 cost the nearest concept 6 more points), reported on icons.
    "until_erased": True,
    "erased_at": 0.7,
    "check_every": 10,
    "check_samples": 4,
    # ours: one Adam state per erased concept over the shared LoRA, so that one concept's large loss (x0-space weights
    # span 0.002..172 across timesteps) does not shrink the later updates of the others. One concept: the same as one.
    "adam_per_concept": True,
    # Audit run after training.
    "audit_samples": 2,  # ours: latents per probe prompt.
    "audit_ddim_steps": 20,  # ours: a shorter DDIM run than training; the audit only needs on-manifold latents.
}

_SEARCH: dict[str, Any] = {
    "vocabulary_limit": VOCABULARY_LIMIT,  # see VOCABULARY_LIMIT
    "exclude_erased_words": True,  # ours: the reference lets the erased word be its own candidate (ref §2.1 step 4).
    "gumbel_lr": 1e-2,  # ref §2.5, §3.2: Adam 1e-2 on the logits.
    "gumbel_hard": True,  # ref §2.2: straight-through one-hot sample.
    "gumbel_top_k": 2,  # ref §3.1: top-k of the soft mixture (used only when gumbel_hard is False).
    # ours, only used with the latent pool: 0 = the found concept is preserved on the erased concept's pooled latents;
    # 8 = 8 drawable words per pool period get trajectories of their own, as both papers sample the found concept.
    # 8 was chosen on the objects world (benchmarks/miniworld/preserve_study.sh: EAP kept the nearest concept at 100
    # instead of 87.5) but did not hold on the icons world (docs/worlds.md: EAP's nearest concept 33 instead of 75,
    # AGE's synonym leak 44% instead of 0), so the default stays 0 until a choice holds on both.
    "pool_candidates": 0,
}

DEFAULTS: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType(
    {
        "esd": MappingProxyType(
            {
                **_COMMON,
                # ours: "auto" = POOL_DDIM_STEPS where the pool serves the latents, else the reference's 50. On the
                # miniature world (docs/speed.md, "A shorter sampling schedule") ESD on pooled 25-step trajectories stayed
                # within 2 points of the faithful recipe with one concept at 100 steps (5 seeds), five at 500 and
                # one at 500 (5 seeds against the faithful 1000 steps: -1.7), and erased more than on 50 steps
                # (the 50-step pool: -5.2 on 4 seeds), at 25-40% fewer UNet evaluations; sampling every latent
                # fresh on 25 steps (five concepts in 100 steps) erased 6.8 points less, so fresh sampling keeps 50.
                "ddim_steps": "auto",
            }
        ),
        "eap": MappingProxyType(
            {
                **_COMMON,
                **_SEARCH,
                "loss_space": "x0",  # ref §2.3 step 4: EAP compares x0-predictions.
                "preserve_weight": 1.0,  # ref §2.3 step 5: implicit weight 1 on the adversarial term.
                "k_closest": 1000,  # ref §2.5: Imagenette / artists.
                "num_centers": 100,  # ref §2.5.
                "gumbel_temperature": 2.0,  # ref §2.5.
            }
        ),
        "age": MappingProxyType(
            {
                **_COMMON,
                **_SEARCH,
                "loss_space": "x0",  # ref §3.1: unchanged from EAP.
                "preserve_weight": 1.0,  # ref §3.1: lambda ("--lamda"), default 1.
                "k_closest": 100,  # ref §3.2: 100 nearest, no clustering.
                "num_centers": 100,  # ref §3.2.
                "gumbel_temperature": 2.0,  # ref §3.2: nudity / EN3K recipe (objects with ImageNet names use 0.1).
                "detached_erasure_term": False,  # ours: paper's gradient; True reproduces the reference quirk (ref §3.1).
                # ours: "auto" = the parameter step and the logit step from one latent and one backward pass
                # (methods/age.py, 6 UNet evaluations a step instead of 10), on pooled latents re-sampled
                # AGE_JOINT_REFRESHES times, where each trajectory then serves at least POOL_AUTO_MIN_REUSE latents
                # (one concept in 256 steps or more). Measured on the miniature world at the SD step count (docs/speed.md,
                # "The latent pool"): one concept, 500 steps, ESR-1 +37.5 against the faithful 1000 steps, the
                # same preservation; five concepts +4.4 / +2.5. Re-sampled 4 times it erased 8-12 points less, and
                # at 100 steps (lr 3e-3) 7 points less over three seeds even re-sampled 16 times, so shorter runs
                # keep the reference's alternating schedule with the pool for the target search only: AGE's
                # parameter steps on pooled latents erased less than on fresh ones there (ESR-1 90.6 vs 96.9 over
                # 4 seeds, one concept per run), while the pool only for the search erased as much (96.9).
                "joint_step": "auto",
                "pool_search_only": True,  # the alternating schedule's; the joint step pools both
                # ours: "auto" = AGE_JOINT_FRESH_STEPS with the joint step, AGE_ALTERNATING_FRESH_STEPS otherwise.
                "pool_fresh_steps": "auto",
                # ours (ref §1: 50): AGE's alternating schedule samples every parameter step's latent fresh, which
                # is most of its cost; a 25-step schedule halves it. On the miniature world (docs/speed.md, "A shorter
                # sampling schedule") AGE stayed within 2 points of the faithful recipe with one and five concepts,
                # at 100 and 500 steps, fresh or pooled, with 38-46% fewer UNet evaluations where it alternates.
                "ddim_steps": 25,
            }
        ),
        "uce": MappingProxyType(
            {
                **_COMMON,
                "layers": "xattn-kv",  # ref §4: only attn2 to_k / to_v have a closed form.
                "steps": 1,  # closed form: one solve
                "lr": 0.0,
                "uce_lambda": 0.5,  # ref §4: lamb.
                "erase_scale": 1.0,  # ref §4.
                "preserve_scale": 1.0,  # ref §4.
                "guide": "",  # ref §4: "" for objects.
                "tokens": "subject",  # ref §4: UCE-new edits the last subject token ("tail" = the UCE-EAP code).
                "templates": 0,  # ref §4: prompt expansion is optional (5 templates); 0 = the bare concept only.
                "energy": 0.999,  # ours: fraction of the edit's squared singular values the exported LoRA keeps.
                "max_rank": 64,  # ours: upper bound on the exported rank per layer.
            }
        ),
    }
)

METHODS: tuple[str, ...] = tuple(DEFAULTS)

# ours: the templates of UCE's optional prompt expansion (`templates`: how many of them; ref §4 uses 5).
UCE_TEMPLATES = ("a photo of a {}", "an image of a {}", "a picture of a {}", "a painting of a {}", "a drawing of a {}")

POOL_AUTO_REFRESHES = (
    4  # ours: the pool-2x4 setting measured on the miniature world (docs/speed.md, "The latent pool").
)
# ours: AGE's joint step re-samples its pool this many times per run (see "joint_step"): with 4 refreshes its pooled
# parameter steps erased 8-12 points less than the faithful recipe, with 16 as much or more (docs/speed.md, "The latent pool").
AGE_JOINT_REFRESHES = 16
# ours: AGE samples the latents of its noisiest draws fresh although the pool is on (`pool_fresh_steps`), the draws
# whose partial sampling takes at most this many steps of its 25-step schedule. The joint step takes the noisiest 6
# (t of 761 and above; the noisiest 11 of the 50-step schedule cover 781 and above): on the miniature world, one
# concept in 500 steps, it erased 2.1 points more than with the noisiest 11 (two seeds) at 22% fewer UNet
# evaluations (docs/speed.md, "A shorter sampling schedule"). The alternating schedule keeps 11 of 25: with 6 its search on
# five concepts in 500 steps erased 1.9 points less over two seeds, 2.8 less than the faithful 1000 steps, for 6%
# fewer evaluations.
AGE_JOINT_FRESH_STEPS = 5
AGE_ALTERNATING_FRESH_STEPS = 10
# ours: only edits of the cross-attention layers, which reach the image through the prompt. On the miniature world's
# implicit task (erase "night" from the `noxattn` layers, which every prompt passes through) EAP and AGE with the
# pool kept far less of the other prompts than with fresh latents (PSR-1 19 and 21 vs 75 and 80).
POOL_AUTO_LAYERS = ("xattn", "xattn-kv")
# ours: a whole trajectory costs about twice a mean partial sampling, so 8 latents per trajectory is a quarter of
# the fresh sampling cost. One concept in 100 steps gives 12.5 (pool); five concepts in 100 steps give 2.5 (fresh).
POOL_AUTO_MIN_REUSE = 8

# The miniature world's recipe (ours): a shorter run with a larger LoRA step, measured with
# `benchmarks/miniworld/evaluate.py` to still erase (docs/speed.md, "Miniature world"); the benchmark uses it for every method.
MINIWORLD_RECIPE: MappingProxyType[str, Any] = MappingProxyType({"steps": 100, "lr": 3e-3})
# `--model demo` adds a smaller candidate vocabulary so that the demo finishes in under two minutes on 2 CPU cores.
DEMO_OVERRIDES: MappingProxyType[str, Any] = MappingProxyType({**MINIWORLD_RECIPE, "vocabulary_limit": 5000})
