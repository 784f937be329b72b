"""Closed-loop evaluation of world models: receding-horizon planning in Gymnasium envs."""
