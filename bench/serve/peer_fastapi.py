"""FastAPI peer: POST /v1/models/{spam,spam_logistic}:predict with
{"instances": [{feature: value, ...}]}, scikit-learn models from $PEER_MODELS.
    uvicorn --app-dir bench/serve peer_fastapi:app --workers 2"""
from typing import Dict, List

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from peer_models import Predictor

predictor = Predictor()
app = FastAPI()


class PredictRequest(BaseModel):
    instances: List[Dict[str, float]]


def predict(name: str, req: PredictRequest):
    if not req.instances:
        raise HTTPException(400, 'expected {"instances": [{...}, ...]}')
    return predictor.predict(name, req.instances)


@app.post("/v1/models/spam:predict")
async def spam(req: PredictRequest):
    return predict("spam", req)


@app.post("/v1/models/spam_logistic:predict")
async def spam_logistic(req: PredictRequest):
    return predict("spam_logistic", req)
