#!/usr/bin/env bash
# Segment a long list of videos on a Slurm cluster: an array of 8 jobs, each taking one slice
# of the list (job K takes inputs K, K+8, K+16, ...; segstream reads SLURM_ARRAY_TASK_ID and
# SLURM_ARRAY_TASK_COUNT). Run it again after a preemption or a failure: with --skip-done each
# job redoes only what is not finalised yet.
#   sbatch deploy/slurm-array.sh            (INPUTS and OUTPUT may be set in the environment)
#SBATCH --job-name=segstream
#SBATCH --array=0-7
#SBATCH --cpus-per-task=4
#SBATCH --mem=2G
#SBATCH --time=04:00:00
#SBATCH --output=segstream-%A_%a.log
set -euo pipefail

segstream segment --inputs "${INPUTS:-inputs.txt}" -o "${OUTPUT:-segmented}" --skip-done --format mp4
