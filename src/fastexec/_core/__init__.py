"""Compiled core of fastexec: fixed-point numbers, instruments, order state,
risk checks and positions. Everything here works on integers at the scales of
``fixedpoint`` so the hot path never touches binary floating point or a Decimal."""
