"""Replay memory: stacking, episode boundaries, wraparound, terminals, n-step returns, priorities."""

import numpy as np
import pytest

from dqnviz.errors import UserError
from dqnviz.replay import ReplayMemory, SumTree, bytes_per_transition, check_fits_in_memory


def frame(value):
    return np.full((1, 84, 84), value, np.uint8)


def fill(memory, count, start_every=None, terminal_every=None, first=1):
    """Write transitions whose frame value is their time index (1, 2, 3, …)."""
    for t in range(first, first + count):
        start = t == first or (start_every and (t - first) % start_every == 0)
        terminal = bool(terminal_every and (t - first) % terminal_every == terminal_every - 1)
        memory.add(frame(t % 256), [t % 4], [float(t)], [terminal], [start])


def values(states):
    return states[:, 0, 0, :]  # (B, history): the frame values, oldest first


def test_state_is_the_last_four_frames_oldest_first():
    memory = ReplayMemory(100, history=4)
    fill(memory, 10)
    states = memory.stack(np.array([0]), np.array([6]))  # slot 6 holds frame 7
    assert values(states).tolist() == [[4, 5, 6, 7]]
    assert states.shape == (1, 84, 84, 4) and states.dtype == np.uint8


def test_state_never_crosses_episode_start():
    memory = ReplayMemory(100, history=4)
    fill(memory, 12, start_every=5)  # games start at frames 1, 6, 11
    # slot 6 holds frame 7; its game started at frame 6, so frames 4 and 5 are zeroed.
    assert values(memory.stack(np.array([0]), np.array([6]))).tolist() == [[0, 0, 6, 7]]
    assert values(memory.stack(np.array([0]), np.array([5]))).tolist() == [[0, 0, 0, 6]]
    assert values(memory.stack(np.array([0]), np.array([9]))).tolist() == [[7, 8, 9, 10]]


def test_sampled_states_never_span_a_start():
    memory = ReplayMemory(150, history=4, seed=3)
    fill(memory, 250, start_every=7, terminal_every=7)
    batch = memory.sample(256)
    for states in (batch["states"], batch["next_states"]):
        frames = values(states).astype(int)
        for row in frames:
            nonzero = row[row > 0]
            # consecutive frames of one game: each non-zero frame is the previous + 1, and zeros only lead
            assert np.all(np.diff(nonzero) == 1)
            assert np.all(row[: len(row) - len(nonzero)] == 0)
            # no game start (frame index ≡ 1 mod 7) except possibly the first non-zero frame
            assert not np.any((nonzero[1:] - 1) % 7 == 0)


def test_wraparound_overwrites_oldest_and_keeps_order():
    memory = ReplayMemory(10, history=4)
    fill(memory, 25)  # frames 1…25; the ring keeps 16…25
    assert len(memory) == 10
    assert sorted(memory.frames[0, :, 0, 0].tolist()) == list(range(16, 26))
    batch = memory.sample(200)
    frames = values(batch["states"]).astype(int)
    # the oldest history-1 slots cannot be sampled (their history is gone), nor the newest (no s')
    assert frames[:, -1].min() == 19 and frames[:, -1].max() == 24
    assert np.all(np.diff(frames, axis=1) == 1)  # a state across the ring's seam is still in order
    assert np.all(values(batch["next_states"])[:, -1] == frames[:, -1] + 1)


def test_terminal_masks_bootstrap_and_next_state_follows():
    memory = ReplayMemory(50, history=4, gamma=0.9)
    fill(memory, 20, start_every=10, terminal_every=10)  # terminals at frames 10 and 20
    returns, discounts = memory.returns(np.array([0, 0]), np.array([9, 8]))  # frames 10 (terminal) and 9
    assert returns.tolist() == [10.0, 9.0]
    assert discounts.tolist() == pytest.approx([0.0, 0.9])


def test_n_step_returns_by_hand():
    gamma = 0.5
    memory = ReplayMemory(50, history=4, n_step=3, gamma=gamma)
    fill(memory, 20, start_every=10, terminal_every=10)  # rewards = frame index; terminal at 10
    returns, discounts = memory.returns(np.array([0, 0, 0]), np.array([3, 7, 8]))
    # frame 4: 4 + .5·5 + .25·6, bootstraps with γ³ from s at frame 7
    # frame 8: 8 + .5·9 + .25·10, frame 10 is terminal → no bootstrap
    # frame 9: 9 + .5·10, stops at the terminal; the next game's reward 11 is not added
    assert returns.tolist() == pytest.approx([4 + 2.5 + 1.5, 8 + 4.5 + 2.5, 9 + 5.0])
    assert discounts.tolist() == pytest.approx([gamma**3, 0.0, 0.0])
    # the sampled next state is s_{t+n}
    memory.rng = np.random.default_rng(0)
    sample = memory.sample(64)
    assert np.all(values(sample["next_states"])[:, -1] == values(sample["states"])[:, -1] + 3)


@pytest.mark.parametrize("n_step", [1, 3])
def test_one_look_up_describes_what_window_and_returns_describe(n_step):
    """sample_batches' single gather over slot−3 … slot+n gives the windows of s and s' and the
    n-step returns exactly as window() twice and returns() do, across game starts and terminals."""
    memory = ReplayMemory(600, num_envs=3, n_step=n_step, gamma=0.9, seed=0)
    rng = np.random.default_rng(2)
    for t in range(450):  # wraps around the 200-slot rings
        memory.add(np.full((3, 84, 84), t % 250, np.uint8), rng.integers(0, 4, 3), rng.choice([-1.0, 0.0, 1.0], 3),
                   rng.random(3) < 0.15, rng.random(3) < 0.15)
    envs, slots, _ = memory.sample_indices(400)
    described = memory.describe(envs, slots)
    state_index, state_keep = memory.window(envs, slots)
    next_index, next_keep = memory.window(envs, (slots + n_step) % memory.per_env)
    returns, discounts = memory.returns(envs, slots)
    expected = dict(state_index=state_index, state_keep=state_keep, next_index=next_index, next_keep=next_keep,
                    returns=returns, discounts=discounts, actions=memory.actions[envs, slots])
    for key, value in expected.items():
        np.testing.assert_array_equal(described[key], value, err_msg=key)
    assert not state_keep.all() and (discounts == 0).any()  # starts and terminals were crossed


def test_vectorised_rings_keep_environments_apart():
    memory = ReplayMemory(40, num_envs=2, history=4)
    for t in range(1, 16):
        memory.add(np.stack([frame(t)[0], frame(100 + t)[0]]), [0, 1], [0.0, 0.0], [False, False], [t == 1, t == 1])
    batch = memory.sample(200)
    frames = values(batch["states"]).astype(int)
    from_env = batch["envs"]
    assert set(from_env.tolist()) == {0, 1}
    assert np.all((frames[from_env == 1] > 100) | (frames[from_env == 1] == 0))
    assert np.all(frames[from_env == 0] <= 15)
    assert batch["actions"].tolist() == from_env.tolist()


def test_prioritized_sampling_follows_priorities():
    memory = ReplayMemory(64, history=1, prioritized=True, alpha=1.0, seed=1)
    fill(memory, 40)
    assert memory.num_sampleable() == 39
    slots = np.arange(39)
    priorities = np.where(slots == 5, 10.0, 1.0)  # slot 5 ten times as likely as any other
    memory.update_priorities(np.zeros(39, int), slots, priorities, epsilon=0.0)
    counts = np.zeros(64)
    for _ in range(200):
        envs, drawn, probabilities = memory.sample_indices(32)
        np.add.at(counts, drawn, 1)
    share = counts / counts.sum()
    assert share[5] == pytest.approx(10 / 48, abs=0.02)
    assert share[39:].sum() == 0  # the unfinished newest slot is never drawn
    batch = memory.sample(32, beta=1.0)
    expected = np.where(batch["slots"] == 5, 0.1, 1.0)  # w ∝ 1/P, normalised by the max
    assert batch["weights"] == pytest.approx(expected, rel=1e-5)


def test_a_draw_landing_on_an_empty_leaf_is_redrawn_by_priority(monkeypatch):
    """Rounding can make the sum tree's search end on an empty leaf; the redraw must follow the
    priorities too, or the probability returned (and so the importance weight) is wrong."""
    memory = ReplayMemory(64, history=1, prioritized=True, alpha=1.0, seed=3)
    fill(memory, 40)
    slots = np.arange(39)
    memory.update_priorities(np.zeros(39, int), slots, np.where(slots == 7, 30.0, 1.0), epsilon=0.0)
    empty = int(np.flatnonzero(memory.tree.get(np.arange(memory.capacity)) == 0)[0])
    monkeypatch.setattr(memory.tree, "find", lambda values: np.full(len(values), empty))  # every search fails
    drawn, probabilities = [], []
    for _ in range(100):
        _, slot, probability = memory.sample_indices(32)
        drawn.append(slot)
        probabilities.append(probability)
    drawn, probabilities = np.concatenate(drawn), np.concatenate(probabilities)
    total = 30.0 + 38.0
    assert np.mean(drawn == 7) == pytest.approx(30 / total, abs=0.03)  # uniform would give 1/39
    assert np.all(probabilities[drawn == 7] == pytest.approx(30 / total))
    assert np.all(probabilities[drawn != 7] == pytest.approx(1 / total))


@pytest.mark.parametrize("prioritized", [False, True])
def test_batches_drawn_together_each_follow_the_priorities(prioritized):
    """The trainer draws an iteration's batches in one call: each batch on its own must still
    sample by priority (dealt round the strata, not cut into runs of low and high priorities)."""
    memory = ReplayMemory(64, history=1, prioritized=prioritized, alpha=1.0, seed=1)
    fill(memory, 40)
    slots = np.arange(39)
    memory.update_priorities(np.zeros(39, int), slots, np.where(slots == 5, 10.0, 1.0), epsilon=0.0)
    counts = np.zeros((4, 64))
    for _ in range(300):
        batches = memory.sample_batches(8, 4, beta=1.0)
        assert [len(b["slots"]) for b in batches] == [8] * 4
        assert set(batches[0]) == set(memory.sample_transitions(8))
        for k, batch in enumerate(batches):
            np.add.at(counts[k], batch["slots"], 1)
            assert batch["weights"].max() == pytest.approx(1.0) and batch["weights"].dtype == np.float32
            if prioritized:  # w ∝ 1/P within the batch
                expected = np.where(batch["slots"] == 5, 0.1, 1.0) / np.where(batch["slots"] == 5, 0.1, 1.0).max()
                assert batch["weights"] == pytest.approx(expected, rel=1e-5)
    share = counts / counts.sum(axis=1, keepdims=True)
    for k in range(4):
        assert share[k, 5] == pytest.approx(10 / 48 if prioritized else 1 / 39, abs=0.03)
        assert share[k, 39:].sum() == 0
        # every batch reaches the whole range: both halves of the ring, by their priority mass
        assert share[k, 20:39].sum() == pytest.approx(19 / (48 if prioritized else 39), abs=0.06)


def test_priorities_of_several_batches_at_once_equal_one_batch_after_another():
    """The trainer passes an iteration's batches in one call: a transition drawn in two batches
    keeps the later |δ|, as if the batches had been applied in order."""
    rng = np.random.default_rng(2)
    one_call, in_order = (ReplayMemory(64, history=1, prioritized=True, seed=1) for _ in range(2))
    for memory in (one_call, in_order):
        fill(memory, 40)
    batches = [(np.zeros(16, int), rng.integers(0, 39, 16), rng.random(16)) for _ in range(3)]
    batches[0][2][:2] = [50.0, 40.0]  # the largest |δ| of all, then superseded ...
    batches.append((np.zeros(2, int), batches[0][1][:2], np.array([7.0, 9.0])))  # ... drawn again, later
    for envs, slots, td in batches:
        in_order.update_priorities(envs, slots, td)
    one_call.update_priorities(*(np.concatenate(parts) for parts in zip(*batches)))
    np.testing.assert_array_equal(one_call.tree.tree, in_order.tree.tree)
    # new transitions enter at the largest priority ever seen, the superseded 50 included
    assert one_call.max_priority == in_order.max_priority == pytest.approx((50.0 + 1e-6) ** one_call.alpha)
    assert one_call.tree.get([batches[0][1][0]])[0] == pytest.approx((7.0 + 1e-6) ** one_call.alpha)


def test_sum_tree_finds_prefix_sums():
    tree = SumTree(5)
    tree.set(np.arange(5), [1.0, 0.0, 2.0, 3.0, 4.0])
    assert tree.total == 10.0
    assert tree.find(np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.99])).tolist() == [0, 0, 2, 2, 3, 3, 4, 4]


@pytest.mark.parametrize("size", [17, 300, 70_000])
def test_sum_tree_agrees_with_a_search_of_the_cumulative_sum(size):
    """Leaf i holds u when Σ_{k<i} p_k ≤ u < Σ_{k≤i} p_k: what searchsorted finds in the cumsum,
    after updates that name a leaf twice, never a leaf of priority 0."""
    rng = np.random.default_rng(size)
    priorities = rng.random(size) * (rng.random(size) < 0.7)  # a third are 0 (not sampleable)
    tree = SumTree(size)
    tree.set(np.arange(size), priorities)
    twice = rng.integers(0, size, 40)
    tree.set(twice, 0.5)
    priorities[twice] = 0.5
    assert tree.total == pytest.approx(priorities.sum())
    u = np.sort(rng.random(3000)) * priorities.sum()
    found = tree.find(u)
    np.testing.assert_array_equal(found, np.searchsorted(np.cumsum(priorities), u, side="right"))
    assert (priorities[found] > 0).all()


@pytest.mark.parametrize("size", [1, 2, 1500, 5000])
def test_every_node_of_the_sum_tree_is_the_sum_of_its_children_after_updates(size):
    """set() walks the changed nodes below SumTree.WHOLE_LEVEL and recomputes the levels above it
    whole: after updates of a few leaves at a time, every node is still left + right, bit for bit,
    and the root is the sum of the leaves."""
    rng = np.random.default_rng(size)
    tree = SumTree(size)
    tree.WHOLE_LEVEL = 16  # walks of several levels below the whole ones, also in small trees
    leaves = np.zeros(size)
    for _ in range(30):
        index = rng.integers(0, size, rng.integers(1, 6))
        values = rng.random(len(index))
        tree.set(index, values)
        leaves[index] = values  # a leaf named twice keeps the last value, as in numpy's assignment
    np.testing.assert_array_equal(tree.get(np.arange(size)), leaves)
    parents = np.arange(1, tree.leaves)
    np.testing.assert_array_equal(tree.tree[parents], tree.tree[2 * parents] + tree.tree[2 * parents + 1])
    assert tree.total == pytest.approx(leaves.sum())


def test_bytes_per_transition_under_budget():
    assert bytes_per_transition() <= 7100
    assert bytes_per_transition(prioritized=True) <= 7100
    memory = ReplayMemory(1000)
    assert memory.nbytes / memory.capacity <= 7100


def test_replay_size_that_does_not_fit_is_refused_with_a_size_that_would():
    with pytest.raises(UserError, match=r"needs 6\.\d\d GiB .* use --replay-size [\d,]+ or less"):
        check_fits_in_memory(1_000_000, available=2 * 2**30)
    assert check_fits_in_memory(1000, available=2 * 2**30) == 1000 * 7062
