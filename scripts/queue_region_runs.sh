#!/usr/bin/env bash
# The queue of long runs (resumable: run it again after a cut; finished runs are only tested again): the region control's CK+48 stage-1
# lambda-0.2 tiers (docs/control-design.md), then the real-face region runs on FER2013
# (docs/real-faces-design.md), then CK+48 for them, then the control's lambda-0 tier.
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
CK=../shared/data/CK+48.zip
FER=../shared/data/fer2013.zip
for set in ckplus-border ckplus-inner; do
  for arm in vgg19 key-s1-l02 centre-s1-l02 off-landmark-s1-l02 face-s1-l02 uniform-s1-l02; do
    $PY scripts/control.py --set $set --ck $CK --arms $arm --workers 2
  done
done
for seed in 0 1 2; do
  $PY scripts/cpu_results.py $FER --names lkrnet-s1 face-s1 off-landmark-s1 uniform-s1 --scale cpu --seed $seed --workers 2
done
for seed in 0 1 2; do
  $PY scripts/cpu_results.py $CK --names lkrnet-s1 face-s1 off-landmark-s1 uniform-s1 --scale cpu --seed $seed --workers 2
done
for seed in 1 2; do
  $PY scripts/cpu_results.py $CK --names vgg19 lkrnet --scale cpu --seed $seed --workers 2 --design docs/real-faces-design.md
done
for set in ckplus-border ckplus-inner; do
  for arm in key-s1-l0 centre-s1-l0 off-landmark-s1-l0 face-s1-l0 uniform-s1-l0; do
    $PY scripts/control.py --set $set --ck $CK --arms $arm --workers 2
  done
done
