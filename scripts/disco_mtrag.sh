#!/usr/bin/env bash
# DiSCo on MTRAG end to end, each step one rayrag job (README: Train; docs/DESIGN.md: how they work):
#   bash scripts/disco_mtrag.sh [STEP] [key=value ...]   (no STEP: pools, folds, all-student, evaluate)
# pools:       SPLADE-tiny encode + inverted index of each domain's pool (the frozen document side)
# recipe:      teacher scores for fold 0 minus 15 held-out conversations, and one training run that
#              evaluates on those 15 each epoch: where the recipe in train_mtrag_disco.yaml was chosen
# folds:       per fold k (0-4): teacher scores of its training conversations, one student
# all-student: one student on all 110 conversations (the mtragun-human check)
# rewrite:     SmolLM2 rewrites of the 777 turns (the second teacher); multi: its 5 fold students
# evaluate:    evaluate_mtrag.yaml (777 turns, k-fold) and evaluate_mtrag_mtragun.yaml
# Every step is skipped when its output folder is complete, so a rerun resumes. Extra key=value
# arguments after the step go to the training runs. Outputs under $RAYRAG_OUT (default out; on a
# cluster, the data volume: RAYRAG_OUT=/data/out); the GPU recipe: DISCO_TRAIN_CONFIG=
# jobs/configs/train_mtrag_disco_gpu.yaml. Data: $RAYRAG_DATA_DIR/mtrag. Python: $RAYRAG_VENV
# (default .venv), else the PATH's python (a Ray cluster's image).
set -euo pipefail
cd "$(dirname "$0")/.."
step="${1:-main}"; shift || true
PY="${RAYRAG_VENV:-.venv}/bin/python"; [ -x "$PY" ] || PY=python
TRAIN_CONFIG="${DISCO_TRAIN_CONFIG:-jobs/configs/train_mtrag_disco.yaml}"
O="${RAYRAG_OUT:-out}"
DOMAINS="govt fiqa cloud clapnq"
FOLDS=5

IDX="$O/mtrag/index-splade-{domain}"

pools() {
  for d in $DOMAINS; do
    [ -f "$O/mtrag/encode-splade-$d/manifest.json" ] || "$PY" -m jobs.encode \
      --config jobs/configs/encode_mtrag_pool_splade.yaml \
      corpus="$RAYRAG_DATA_DIR/mtrag/pool/corpus/$d.jsonl" output_dir="$O/mtrag/encode-splade-$d"
    [ -f "$O/mtrag/index-splade-$d/manifest.json" ] || "$PY" -m jobs.index \
      --config jobs/configs/index_mtrag_pool_splade.yaml \
      embeddings="$O/mtrag/encode-splade-$d" output_dir="$O/mtrag/index-splade-$d"
  done
}

scores() {  # scores <fold> <holdout> <output folder> [key=value ...]
  local fold="$1" holdout="$2" out="$3"; shift 3
  [ -f "$out/manifest.json" ] || "$PY" -m jobs.teacher_scores --config jobs/configs/teacher_scores_mtrag.yaml \
    fold="$fold" holdout="$holdout" index="$IDX" output_dir="$out" "$@"
}

train() {  # train <output folder> [key=value ...]
  local out="$1"; shift
  [ -f "$out/model/rayrag_sparse.json" ] || "$PY" -m jobs.train_sparse --config "$TRAIN_CONFIG" \
    disco.doc_index="$IDX" output_dir="$out" "$@"
}

recipe() {
  scores 0 recipe "$O/disco/fold0"
  train "$O/train/mtrag-disco" examples="$O/disco/fold0/train.jsonl" \
    disco.eval_examples="$O/disco/fold0/recipe.jsonl" "$@"
}

student() {  # student <examples folder> <output folder> [key=value ...]: the frozen recipe, no evaluation
  local ex="$1" out="$2"; shift 2
  train "$out" examples="$ex/train.jsonl" disco.eval_examples=null eval.before_training=false "$@"
}

folds() {
  for k in $(seq 0 $((FOLDS - 1))); do
    scores "$k" none "$O/disco/final-fold$k"
    student "$O/disco/final-fold$k" "$O/train/mtrag-disco-fold$k" "$@"
  done
}

rewrite() {  # SmolLM2 rewrites of the 777 turns: the second teacher (slow on CPU, resumable)
  [ -f "$O/rewrite/mtrag-smollm2/manifest.json" ] || "$PY" -m jobs.rewrite \
    --config jobs/configs/rewrite_mtrag_smollm2.yaml output_dir="$O/rewrite/mtrag-smollm2"
}

multi() {  # per fold: human + SmolLM2 teachers, their distributions merged (equal weights)
  for k in $(seq 0 $((FOLDS - 1))); do
    scores "$k" none "$O/disco/final-multi-fold$k" "teachers=[human,smollm2=$O/rewrite/mtrag-smollm2]"
    student "$O/disco/final-multi-fold$k" "$O/train/mtrag-disco-multi-fold$k" "disco.teachers=[human,smollm2]" "$@"
  done
}

all_student() {
  scores all none "$O/disco/all"
  student "$O/disco/all" "$O/train/mtrag-disco-all" "$@"
}

evaluate() {  # every arm of evaluate_mtrag.yaml; without the multi-teacher students, the single ones
  local forms="last_turn,history,rewrite,student:disco-single=$O/train/mtrag-disco-fold{fold}/model"
  local pairs="student:disco-single vs last_turn,student:disco-single vs history,student:disco-single vs rewrite"
  pairs="$pairs,history vs last_turn,rewrite vs last_turn"
  if [ -f "$O/train/mtrag-disco-multi-fold$((FOLDS - 1))/model/rayrag_sparse.json" ]; then
    forms="$forms,rewrite:smollm2=$O/rewrite/mtrag-smollm2/rewrite.jsonl"
    forms="$forms,student:disco-multi=$O/train/mtrag-disco-multi-fold{fold}/model"
    pairs="$pairs,student:disco-multi vs last_turn,student:disco-multi vs history,student:disco-multi vs rewrite"
    pairs="$pairs,student:disco-multi vs student:disco-single,rewrite:smollm2 vs last_turn"
  fi
  "$PY" -m jobs.evaluate_mtrag --config jobs/configs/evaluate_mtrag.yaml output_dir="$O/mtrag-eval" \
    "retrievers=[bm25,splade=index:$IDX]" "query_forms=[$forms]" "pairs=[$pairs]"
  "$PY" -m jobs.evaluate_mtrag --config jobs/configs/evaluate_mtrag_mtragun.yaml output_dir="$O/mtrag-eval-mtragun" \
    "retrievers=[bm25,splade=index:$IDX]" \
    "query_forms=[last_turn,history,student:disco-single=$O/train/mtrag-disco-all/model]" \
    "pairs=[student:disco-single vs last_turn,student:disco-single vs history,history vs last_turn]"
}

case "$step" in
  pools) pools ;;
  recipe) pools; recipe "$@" ;;
  folds) pools; folds "$@" ;;
  all-student) pools; all_student "$@" ;;
  rewrite) rewrite ;;
  multi) pools; rewrite; multi "$@" ;;
  evaluate) evaluate ;;
  main) pools; folds "$@"; all_student "$@"; evaluate ;;
  *) echo "unknown step '$step': pools | recipe | folds | all-student | rewrite | multi | evaluate" >&2; exit 2 ;;
esac
