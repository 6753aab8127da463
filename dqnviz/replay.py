"""Replay memory: uint8 frames stored once in a circular buffer, states stacked at sample time.

In the data flow (ROM → environment → replay → network and learner → snapshot → analysis →
report): the trainer adds each step's newest frame; the learner reads one batch per update.

Each slot ``i`` of an environment's ring holds one transition::

    frame[i]     the newest frame of state s_i (84×84 uint8)
    start[i]     s_i is the first state of a game (earlier frames belong to another game)
    action[i]    a_i, reward[i] r_i (clipped), terminal[i] (no bootstrapping past step i)

The state s_i is ``frame[i-3 … i]`` with every frame from before the most recent game start set
to zero — exactly what the actor saw, so a sampled state never spans an episode start. With
``num_envs`` environments the memory is ``num_envs`` rings of ``capacity / num_envs`` slots.

n-step targets are built at sample time::

    R = Σ_{k<m} γ^k r_{i+k},   discount = γ^n if no terminal in steps i … i+n−1, else 0,
    next state = s_{i+n}

where m ≤ n stops at the first terminal. A slot can be sampled once its n successors are
written and its whole history is still in the ring.

Memory per transition: 7,056 bytes of frame + 1 action + 4 reward + 1 flags = 7,062 bytes
(+ 16 bytes of sum tree with ``prioritized``), against simple_dqn's 6.57 GiB per million.
"""

from __future__ import annotations

import numpy as np

from dqnviz.atari import channels_last
from dqnviz.errors import UserError
from dqnviz.units import format_bytes

TERMINAL, START = np.uint8(1), np.uint8(2)


def bytes_per_transition(frame_shape=(84, 84), prioritized: bool = False) -> float:
    """Bytes one transition costs, all bookkeeping included.

    H·W (the newest frame, uint8) + 1 (action) + 4 (reward, float32) + 1 (terminal and
    game-start flags), plus 16 with prioritized replay (its sum tree: 2 float64 nodes a leaf).
    For 84×84 frames: 7,056 + 6 = 7,062 bytes, or 7,078 prioritized.
    """
    base = int(np.prod(frame_shape)) + 1 + 4 + 1
    return base + (16.0 if prioritized else 0.0)


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (psutil, or /proc/meminfo without it)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024


def check_fits_in_memory(capacity: int, frame_shape=(84, 84), prioritized: bool = False,
                         available: int | None = None, headroom: float = 0.8) -> int:
    """Refuse a replay size that would not fit in the memory available now.

    Returns the bytes needed. Raises :class:`UserError` saying how much is needed and which
    ``--replay-size`` would fit (leaving 20% of the available memory for everything else).
    """
    per = bytes_per_transition(frame_shape, prioritized)
    needed = int(capacity * per)
    if available is None:
        available = available_memory()
    if needed > headroom * available:
        fits = int(headroom * available / per) // 1000 * 1000
        raise UserError(
            f"--replay-size {capacity:,} needs {format_bytes(needed)} but only "
            f"{format_bytes(available)} of memory is available; use --replay-size {fits:,} or less"
        )
    return needed


class SumTree:
    """A binary tree whose leaves are priorities and whose nodes are sums of their children.

    ``find(u)`` returns the leaf ``i`` with ``Σ_{k<i} p_k ≤ u < Σ_{k≤i} p_k``, for a whole batch
    of ``u`` at once, in O(log n) vectorised steps.

    Both walks touch the levels of at most :attr:`WHOLE_LEVEL` nodes as whole arrays: a sampling
    iteration (1,024 draws, 384 leaves set when 128 environments add, 1,024 priorities written)
    makes 20-level walks in a million-leaf tree, and one numpy call over a small level costs less
    than ten over the walked nodes (``benchmarks/replay_speed.py``).
    """

    #: the size up to which a level is read or written whole
    WHOLE_LEVEL = 1024

    def __init__(self, size: int):
        self.depth = max(0, int(np.ceil(np.log2(max(size, 1)))))
        self.leaves = 1 << self.depth
        self.tree = np.zeros(2 * self.leaves, np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, index) -> np.ndarray:
        return self.tree[np.asarray(index) + self.leaves]

    def set(self, index, priority) -> None:
        """Set leaves ``index`` to ``priority`` and every sum above them.

        Each parent is recomputed from its two children, ``node = left + right``. Near the leaves
        only the changed nodes' parents are (a gather and a scatter per level); the levels of at
        most :attr:`WHOLE_LEVEL` nodes are recomputed whole, by one contiguous sum of slices each:
        the same additions of the same values, so the same tree (the top eleven levels of a
        million-leaf tree cost 2,047 additions in eleven calls, not 44 calls over the walked nodes).
        """
        nodes = np.asarray(index, np.int64) + self.leaves
        self.tree[nodes] = priority
        level = self.depth  # nodes of level d are tree[2^d : 2^(d+1)]
        while level > 0 and (1 << (level - 1)) > self.WHOLE_LEVEL:
            # A parent listed twice is just summed twice, to the same value: no need to dedupe.
            nodes = nodes >> 1
            level -= 1
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
        for level in range(level - 1, -1, -1):
            low = 1 << level
            self.tree[low:2 * low] = self.tree[2 * low:4 * low:2] + self.tree[2 * low + 1:4 * low:2]

    def find(self, values: np.ndarray) -> np.ndarray:
        """The leaves holding ``values``: the walk from the root goes right where ``u ≥ left``,
        carrying ``u − left``. The top levels are one step: at the deepest level ``L`` of at most
        :attr:`WHOLE_LEVEL` nodes, with ``c`` the running sum of its nodes, ``u`` is under node
        ``j`` with ``c[j−1] ≤ u < c[j]`` and carries ``u − c[j−1]``."""
        values = np.array(values, np.float64)
        level = min(self.depth, int(np.log2(self.WHOLE_LEVEL)))
        low = 1 << level
        before = np.concatenate([[0.0], np.cumsum(self.tree[low:2 * low])])  # c[j − 1], then the total
        # the node under u; a u at or past the total (rounding) goes to the last node
        below = np.minimum(np.searchsorted(before, values, side="right") - 1, low - 1)
        values = values - before[below]
        nodes = below + low
        for _ in range(self.depth - level):
            left = self.tree[2 * nodes]
            go_right = values >= left
            values = np.where(go_right, values - left, values)
            nodes = 2 * nodes + go_right
        return nodes - self.leaves


class ReplayMemory:
    """Transitions from ``num_envs`` environments in ``num_envs`` circular uint8 buffers.

    Args:
        capacity: transitions kept in all (split evenly across environments).
        num_envs: environments adding one transition each per ``add``.
        history: frames per state.
        n_step, gamma: for the n-step return (see the module docstring).
        prioritized: proportional prioritized replay (Schaul et al. 2016):
            P(i) = p_i^α / Σ_k p_k^α with p_i = |δ_i| + ε (the sum tree stores p_i^α), and
            importance weights w_i = (N · P(i))^−β divided by the largest w of the batch, N the
            sampleable transitions.
        alpha: priority exponent α.
        seed: seeds sampling.
    """

    def __init__(self, capacity: int, num_envs: int = 1, frame_shape=(84, 84), history: int = 4,
                 n_step: int = 1, gamma: float = 0.99, prioritized: bool = False, alpha: float = 0.6,
                 seed: int = 0):
        if capacity < num_envs * (history + n_step + 1):
            raise UserError(
                f"--replay-size {capacity} is too small: it must hold at least "
                f"{num_envs * (history + n_step + 1)} transitions for {num_envs} environment(s)"
            )
        self.num_envs, self.history, self.n_step, self.gamma = num_envs, history, n_step, gamma
        self.per_env = capacity // num_envs
        self.capacity = self.per_env * num_envs
        self.frame_shape = tuple(frame_shape)
        self.frames = self._allocate_frames((num_envs, self.per_env) + self.frame_shape)
        self.actions = np.zeros((num_envs, self.per_env), np.uint8)
        self.rewards = np.zeros((num_envs, self.per_env), np.float32)
        self.flags = np.zeros((num_envs, self.per_env), np.uint8)
        self.cursor = 0  # every ring is written in step, so one cursor serves all
        self.written = 0  # transitions written per environment, ever
        self.rng = np.random.default_rng(seed)
        self.prioritized, self.alpha = prioritized, alpha
        self.tree = SumTree(self.capacity) if prioritized else None
        self.max_priority = 1.0

    def __len__(self) -> int:
        return min(self.written, self.per_env) * self.num_envs

    # -- where the frames live: host memory here; DeviceReplay keeps them on the accelerator ----

    def _allocate_frames(self, shape):
        return np.zeros(shape, np.uint8)

    def _write_frames(self, slot: int, frames) -> None:
        self.frames[:, slot] = frames

    def _gather_states(self, envs, index, keep):
        """``frames[envs, index]`` with frames where ``keep`` is False set to 0, channels last."""
        frames = self.frames[envs[:, None], index]  # (B, history, 84, 84)
        frames[~keep] = 0
        return channels_last(frames)

    @property
    def nbytes(self) -> int:
        tree = self.tree.tree.nbytes if self.tree is not None else 0
        frames = int(np.prod(self.frames.shape))  # uint8, wherever they live
        return frames + self.actions.nbytes + self.rewards.nbytes + self.flags.nbytes + tree

    def add(self, frames, actions, rewards, terminals, starts) -> None:
        """Store one transition per environment.

        Args:
            frames: (num_envs, 84, 84) newest frame of each state s_t.
            actions, rewards, terminals: a_t, clipped r_t, and whether step t was terminal.
            starts: whether s_t is the first state of a game.
        """
        slot = self.cursor
        # Newest frames taken from channels-last states are a strided view; one contiguous copy
        # (0.13 ms for 64 environments) spares the ring's write, or the device buffer's staging,
        # a byte-by-byte strided copy (1.2 ms). The trainer's stacks[:, -1] are whole frames, so
        # their copy is a plain memcpy (0.02 ms for 128), and the staged frames are the memory's own.
        self._write_frames(slot, np.ascontiguousarray(frames, np.uint8))
        self.actions[:, slot] = actions
        self.rewards[:, slot] = rewards
        self.flags[:, slot] = np.where(terminals, TERMINAL, 0) | np.where(starts, START, 0)
        self.cursor = (slot + 1) % self.per_env
        self.written += 1
        if self.prioritized:
            self._update_validity(slot)

    def _logical_range(self) -> tuple[int, int]:
        """Sampleable logical positions [low, high], oldest slot = 0."""
        count = min(self.written, self.per_env)
        return self.history - 1, count - 1 - self.n_step

    def _physical(self, logical):
        oldest = self.cursor if self.written >= self.per_env else 0
        return (oldest + logical) % self.per_env

    def _update_validity(self, slot: int) -> None:
        """One tree update per step: the new slot and the slot that lost its history → 0 (not
        sampleable), the slot whose n successors are now written → the maximum priority."""
        envs = np.arange(self.num_envs) * self.per_env
        slots, values = [slot], [0.0]
        if self.written > self.per_env:
            # The oldest history-1 slots lost their history: the one that just became oldest+h-2.
            slots.append((slot + self.history - 1) % self.per_env)
            values.append(0.0)
        low, high = self._logical_range()
        if high >= low:
            slots.append(self._physical(high))
            values.append(self.max_priority)
        index = (envs[None, :] + np.asarray(slots)[:, None]).ravel()
        self.tree.set(index, np.repeat(values, self.num_envs))

    def num_sampleable(self) -> int:
        low, high = self._logical_range()
        return max(0, high - low + 1) * self.num_envs

    def sample_indices(self, batch_size: int):
        """Draw ``(env, slot)`` pairs: uniformly, or by priority. Returns (envs, slots, probabilities).

        Uniform: P(i) = 1/N over the N sampleable transitions. By priority (Schaul et al. 2016):
        P(i) = leaf_i / Σ_k leaf_k, the tree's leaves holding p_i^α (see :meth:`update_priorities`),
        stratified: draw k of a batch of B finds the leaf holding u_k = (k + U[0, 1)) · Σ leaf / B,
        so every batch spans the whole range of priorities.
        """
        if self.num_sampleable() == 0:
            raise ValueError("the replay memory has no complete transition yet")
        if not self.prioritized:
            low, high = self._logical_range()
            envs = self.rng.integers(0, self.num_envs, batch_size)
            logical = self.rng.integers(low, high + 1, batch_size)
            return envs, self._physical(logical), np.full(batch_size, 1.0 / self.num_sampleable())
        total = self.tree.total
        bounds = (np.arange(batch_size) + self.rng.random(batch_size)) / batch_size * total
        flat = np.minimum(self.tree.find(bounds), self.capacity - 1)
        priorities = self.tree.get(flat)
        if np.any(priorities <= 0):
            # Rounding at a segment's edge found an empty leaf: redraw those by priority too, so
            # that P(i) = p_i / Σp, the probability returned, stays the one they were drawn with.
            leaves = self.tree.get(np.arange(self.capacity))
            valid = np.flatnonzero(leaves > 0)
            bad = priorities <= 0
            flat[bad] = self.rng.choice(valid, bad.sum(), p=leaves[valid] / leaves[valid].sum())
            priorities = self.tree.get(flat)
        return flat // self.per_env, flat % self.per_env, priorities / total

    def window(self, envs, slots):
        """The frames of states s_slot: ``(index, keep)``, both (B, history), oldest … newest.

        ``index`` is each frame's slot in its environment's ring; ``keep`` is False for frames
        from before the latest game start in the window (they are shown as zeros).
        """
        index = (slots[:, None] + np.arange(-self.history + 1, 1)[None, :]) % self.per_env
        return index, _kept((self.flags[envs[:, None], index] & START) > 0)

    def stack(self, envs, slots) -> np.ndarray:
        """The states s_slot, shaped (B, 84, 84, history), zero before the latest game start."""
        return self._gather_states(envs, *self.window(envs, slots))

    def returns(self, envs, slots):
        """n-step returns and discounts: ``R = Σ_{k<m} γ^k r_{slot+k}``, ``discount = γ^n · [no terminal]``,
        where m = n, or the steps up to and including the first terminal among the n."""
        steps = (slots[:, None] + np.arange(self.n_step)[None, :]) % self.per_env
        return self._returns(self.rewards[envs[:, None], steps], (self.flags[envs[:, None], steps] & TERMINAL) > 0)

    def _returns(self, rewards, terminal):
        """:meth:`returns` from the rewards and terminal flags of steps slot … slot+n−1, (B, n)."""
        # alive[k]: no terminal strictly before step k, so reward k still counts.
        alive = np.concatenate([np.ones((len(rewards), 1), bool), np.cumprod(~terminal[:, :-1], 1).astype(bool)], 1)
        powers = self.gamma ** np.arange(self.n_step)
        returns = (rewards * alive * powers).sum(1).astype(np.float32)
        discounts = np.where(terminal.any(1), 0.0, self.gamma ** self.n_step).astype(np.float32)
        return returns, discounts

    def describe(self, envs, slots) -> dict:
        """What :meth:`sample_transitions` returns for the transitions ``(envs, slots)``, weights aside.

        One gather of the flags covers both states' windows and the n steps' terminals (slots
        slot−h+1 … slot+n): the same values as :meth:`window` twice and :meth:`returns`, with
        three gathers from the (num_envs, per_env) tables instead of six, each a ``take`` at
        ``env · per_env + slot`` from the flattened table (a fifth of the cost of indexing by
        (env, slot) pairs).
        """
        h, n = self.history, self.n_step
        index = (slots[:, None] + np.arange(-h + 1, n + 1)[None, :]) % self.per_env  # (B, h + n)
        flat = index + (np.asarray(envs) * self.per_env)[:, None]
        flags = self.flags.reshape(-1).take(flat)
        starts = (flags & START) > 0
        steps = slice(h - 1, h - 1 + n)  # slot … slot+n−1
        returns, discounts = self._returns(self.rewards.reshape(-1).take(flat[:, steps]), (flags[:, steps] & TERMINAL) > 0)
        return {
            "envs": envs, "slots": slots, "actions": self.actions.reshape(-1).take(flat[:, h - 1]).astype(np.int32),
            "returns": returns, "discounts": discounts,
            "state_index": index[:, :h], "state_keep": _kept(starts[:, :h]),
            "next_index": index[:, n:n + h], "next_keep": _kept(starts[:, n:n + h]),
        }

    def sample_transitions(self, batch_size: int, beta: float = 0.4) -> dict:
        """A batch without its frames: ``envs, slots, actions, returns, discounts, weights`` and
        the frame windows ``state_index, state_keep, next_index, next_keep`` (see :meth:`window`).

        A learner that reads the frames where they live (``--device-replay``) stacks the states
        itself; :meth:`sample` stacks them here.
        """
        return self.sample_batches(batch_size, 1, beta)[0]

    def sample_batches(self, batch_size: int, count: int, beta: float = 0.4) -> list[dict]:
        """``count`` batches of :meth:`sample_transitions`, drawn together (one pass of numpy
        work instead of ``count``: an iteration of 64 environments needs 8 batches).

        Uniform draws are independent, so drawing them together changes nothing. Prioritized
        draws are stratified over ``count · batch_size`` equal segments of the total priority:
        segment j·count + m is the m-th part of a batch's j-th segment, and each j's ``count``
        parts are dealt to the batches in a random order. Sample j of every batch is then uniform
        over its j-th segment, exactly as when the batch is drawn alone, and the batches together
        are one finer stratified sample. Importance weights w_i = (N·P(i))^(−β) are normalised by
        each batch's own largest.
        """
        envs, slots, probabilities = self.sample_indices(batch_size * count)
        if count > 1:
            # (batch_size, count): row j holds the draws from segment j's parts, in a random order;
            # batch k is column k. Dealt before anything else is looked up, so that each field is
            # computed once, in batch order, and batch k is a row view of the (count, batch_size, …) arrays.
            deal = np.arange(batch_size * count).reshape(batch_size, count)
            deal = np.take_along_axis(deal, np.argsort(self.rng.random(deal.shape), axis=1), axis=1)
            order = deal.T.ravel()
            envs, slots, probabilities = envs[order], slots[order], probabilities[order]
        drawn = self.describe(envs, slots)
        if self.prioritized:
            weights = ((self.num_sampleable() * probabilities) ** (-beta)).reshape(count, batch_size)
            drawn["weights"] = (weights / weights.max(axis=1, keepdims=True)).astype(np.float32).ravel()
        else:
            drawn["weights"] = np.ones(len(slots), np.float32)
        if count == 1:
            return [drawn]
        dealt = {key: value.reshape((count, batch_size) + value.shape[1:]) for key, value in drawn.items()}
        return [{key: value[k] for key, value in dealt.items()} for k in range(count)]

    def stack_transitions(self, transitions: dict) -> dict:
        """The learner's batch for :meth:`sample_transitions`' output: states and next states stacked."""
        envs = transitions["envs"]
        return {
            "states": self._gather_states(envs, transitions["state_index"], transitions["state_keep"]),
            "actions": transitions["actions"],
            "returns": transitions["returns"],
            "discounts": transitions["discounts"],
            "next_states": self._gather_states(envs, transitions["next_index"], transitions["next_keep"]),
            "weights": transitions["weights"],
            "envs": envs,
            "slots": transitions["slots"],
        }

    def sample(self, batch_size: int, beta: float = 0.4) -> dict:
        """A batch of ``states, actions, returns, discounts, next_states, weights`` (+ ``envs, slots``)."""
        return self.stack_transitions(self.sample_transitions(batch_size, beta))

    def update_priorities(self, envs, slots, td_errors, epsilon: float = 1e-6) -> None:
        """Set the sampled transitions' leaves to p_i^α with p_i = |δ_i| + ε; a transition listed twice gets its
        last |δ|, so several batches can be passed at once, concatenated in order."""
        if not self.prioritized:
            return
        priorities = (np.abs(np.asarray(td_errors, np.float64)).ravel() + epsilon) ** self.alpha
        if priorities.size == 0:
            return
        # max over every |δ| passed, superseded ones included: applied in order, each batch
        # would have raised max_priority before the next one replaced its leaf
        self.max_priority = max(self.max_priority, float(priorities.max()))
        flat = (np.asarray(envs) * self.per_env + np.asarray(slots)).ravel()
        _, last = np.unique(flat[::-1], return_index=True)
        last = len(flat) - 1 - last
        flat, priorities = flat[last], priorities[last]
        still_valid = self.tree.get(flat) > 0  # an overwritten slot keeps priority 0
        self.tree.set(flat[still_valid], priorities[still_valid])


def _kept(starts):
    """keep[:, k]: no frame after k in the window starts a game (``starts``: (B, frames), oldest first).

    keep[:, k] = ¬(starts[:, k+1] ∨ … ∨ starts[:, −1]): a running "or" from the newest frame back."""
    keep = np.ones(starts.shape, bool)
    if starts.shape[1] > 1:
        keep[:, :-1] = ~np.logical_or.accumulate(starts[:, :0:-1], axis=1)[:, ::-1]
    return keep


class DeviceReplay(ReplayMemory):
    """A :class:`ReplayMemory` whose frames live on the accelerator (``--device-replay``).

    Bookkeeping (actions, rewards, flags, priorities) and the choice of transitions stay on the
    host and are shared with :class:`ReplayMemory`, so both sample the same distribution. Only
    the frames — 7,056 of the 7,062 bytes per transition — move. New frames are staged on the
    host and written in one call with the next update (or every few steps when nobody learns),
    and the learner stacks a sampled batch's states on the device from the frame windows of
    :meth:`sample_transitions`, so no state crosses the host–device bus.
    """

    def __init__(self, *args, frames_per_update: int = 1, **kwargs):
        #: iterations between two updates, ⌈f / n⌉ with n environments updating every f agent steps
        #: (fewer when n does not divide f): the learner's fused call takes the frames staged in them,
        #: padded to that many and to a power of two, so that it keeps one shape (FrameBuffer.take_staged)
        self.frames_per_update = frames_per_update
        super().__init__(*args, **kwargs)

    def _allocate_frames(self, shape):
        from dqnviz.backend import FrameBuffer

        self.buffer = FrameBuffer(shape, frames_per_call=self.frames_per_update)
        return self.buffer

    def _write_frames(self, slot: int, frames) -> None:
        self.buffer.stage(slot, frames)

    def _gather_states(self, envs, index, keep):
        return self.buffer.gather(envs, index, keep)
