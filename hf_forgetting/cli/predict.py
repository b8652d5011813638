"""``hf-forgetting predict``: complete a new task's row from measured entries with a saved predictor."""

from __future__ import annotations

from dataclasses import dataclass, field

from .parsing import parse_stage


@dataclass
class PredictArguments:
    predictor: str = field(metadata={"help": "Folder of a saved predictor."})
    known: str = field(metadata={"help": "CSV with columns example_id,forgetting: the measured entries."})
    output: str = field(default="predicted_forgetting.csv", metadata={"help": "CSV to write: example_id,forgetting."})


def main(argv: list[str]) -> int:
    import numpy as np

    from ..completion import ForgettingPredictor
    from ..format.forgetting_csv import read_forgetting_csv, write_forgetting_csv

    args = parse_stage(PredictArguments, argv, "predict", positional="predictor")
    known_ids, values = read_forgetting_csv(args.known)
    predictor = ForgettingPredictor.from_pretrained(args.predictor)
    predicted = predictor.predict(known_ids, values)
    write_forgetting_csv(args.output, predictor.example_ids, predicted)
    top = np.argsort(-predicted)[:5]
    print("Most forgotten (predicted): " + ", ".join(f"{predictor.example_ids[j]} ({predicted[j]:+.3f})" for j in top))
    print(f"Wrote {len(predicted)} predictions to {args.output}")
    return 0
