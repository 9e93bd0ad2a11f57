"""Flask peer: POST /v1/models/{spam,spam_logistic}:predict with
{"instances": [{feature: value, ...}]}, scikit-learn models from $PEER_MODELS.
    gunicorn --chdir bench/serve peer_flask:app -w 2 -k gthread"""
from flask import Flask, jsonify, request

from peer_models import Predictor

predictor = Predictor()
app = Flask(__name__)


@app.post("/v1/models/<name>:predict")
def predict(name):
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list) or not body["instances"]:
        return jsonify(error={"code": "bad_request", "message": 'expected {"instances": [{...}, ...]}'}), 400
    res = predictor.predict(name, body["instances"])
    if res is None:
        return jsonify(error={"code": "not_found", "message": f"no hosted model '{name}'"}), 404
    return jsonify(res)
