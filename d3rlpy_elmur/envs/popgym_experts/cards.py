"""Experts for POPGym's card tasks: RepeatPrevious, RepeatFirst, Autoencode, CountRecall,
HigherLower and Concentration.

The first four read the hidden answer (which the observation history determines: a
memory model can learn it). HigherLower and Concentration act on their observations: an
expert reading the next card would win every guess, one knowing the face-down cards would
flip only matching pairs, and nothing the model sees would explain either.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import PopGymExpert

__all__ = [
    "AutoencodeExpert",
    "ConcentrationExpert",
    "CountRecallExpert",
    "HigherLowerExpert",
    "RepeatFirstExpert",
    "RepeatPreviousExpert",
]


class RepeatPreviousExpert(PopGymExpert):
    """Answers the suit of the card the environment scores against (k cards back)."""

    def act(self, observation: Any) -> int:
        env = self._state
        hand = env.deck["player"]
        if len(hand) < env.k:  # not scored yet: any answer
            return 0
        return int(env.deck.suits_idx[hand[-env.k]])


class RepeatFirstExpert(PopGymExpert):
    """Answers the suit of the first card at every step (optimal).

    A model that sees its own previous action can copy it instead of remembering the
    first card: with these demonstrations, only observation-only inputs test memory.
    """

    def act(self, observation: Any) -> int:
        return int(self._state.card)


class AutoencodeExpert(PopGymExpert):
    """Watches (action ignored), then recites the dealt suits in reverse order."""

    def act(self, observation: Any) -> int:
        env = self._state
        if int(env.mode) != 0:  # Mode.WATCH: the action is not scored
            return 0
        return int(env.deck.suits_idx[env.deck["system"][-1]])


class CountRecallExpert(PopGymExpert):
    """Answers how many cards of the queried kind have been dealt so far."""

    def act(self, observation: Any) -> int:
        env = self._state
        return int(env.counts[env.query])


class HigherLowerExpert(PopGymExpert):
    """Counts cards (observation-only): guesses "higher" (0) when more of the cards left in
    the deck rank above the shown card than below it, else "lower" (1).

    Every observation is a newly dealt card, so the counts are the observation history.
    A guess changes nothing that follows, so this greedy choice is the best any policy
    can do from the observations; it is not 1.0, as the next card is random (an expert
    reading it would win every guess for reasons no history explains).
    """

    privileged = False

    def reset(self) -> None:
        env = self._state
        ranks = int(env.observation_space.n)  # 13; every deck holds 4 of each
        self._left = np.full(ranks, 4 * int(env.num_decks))

    def act(self, observation: Any) -> int:
        shown = int(observation)
        self._left[shown] -= 1  # per rank, the cards still in the deck
        higher, lower = int(self._left[shown + 1 :].sum()), int(self._left[:shown].sum())
        return 0 if higher >= lower else 1


class ConcentrationExpert(PopGymExpert):
    """Perfect-memory player on the observations (observation-only).

    It remembers every card it has turned. First flip of a turn: one of a known pair if
    it knows one, else the lowest-numbered card it has not seen. Second flip: the known
    partner of the first card if there is one, else the next unseen card. It never turns
    a face-up card. Near-optimal: the perfect-memory strategy is optimal up to rare
    end-game choices (flipping a known card second to reveal less).
    """

    privileged = False

    def reset(self) -> None:
        n = len(self._state.deck)
        self._values = np.full(n, -1, dtype=np.int64)  # seen face value, -1 unseen
        self._matched = np.zeros(n, dtype=bool)
        self._first: int | None = None  # the card turned first this turn
        self._last: int | None = None  # the card turned at the previous step

    def act(self, observation: Any) -> int:
        if self._last is not None:
            self._remember(np.asarray(observation), self._last)
        card = self._first_flip() if self._first is None else self._second_flip(self._first)
        self._last = card
        return card

    def _remember(self, observation: np.ndarray, card: int) -> None:
        self._values[card] = int(observation[card])
        if self._first is None:
            self._first = card
            return
        if self._values[self._first] == self._values[card]:
            self._matched[[self._first, card]] = True
        self._first = None

    def _open(self, value: int, exclude: int = -1) -> np.ndarray:
        """Unmatched cards known to show ``value`` (other than ``exclude``)."""
        mask = (self._values == value) & ~self._matched
        if exclude >= 0:
            mask[exclude] = False
        return np.flatnonzero(mask)

    def _unseen(self, exclude: int = -1) -> int:
        candidates = np.flatnonzero((self._values < 0) & ~self._matched)
        candidates = candidates[candidates != exclude]
        if len(candidates):
            return int(candidates[0])
        # every unmatched card is known (cannot happen with pairs left): any other one
        return int(np.flatnonzero(~self._matched & (np.arange(len(self._values)) != exclude))[0])

    def _first_flip(self) -> int:
        known = self._values[(self._values >= 0) & ~self._matched]
        values, counts = np.unique(known, return_counts=True)
        if np.any(counts >= 2):
            return int(self._open(int(values[np.argmax(counts >= 2)]))[0])
        return self._unseen()

    def _second_flip(self, first: int) -> int:
        partners = self._open(int(self._values[first]), exclude=first)
        if len(partners):
            return int(partners[0])
        return self._unseen(exclude=first)
