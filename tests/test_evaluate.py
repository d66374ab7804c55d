"""Evaluation figures against hand-worked numbers; the model's mode is restored; files round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from s7core.data import CIFAR10_MEAN, CIFAR10_STD, normalize
from s7core.errors import UserError
from s7core.evaluate import Evaluation, EvaluationFileError, evaluate, misclassified, predict_logits, shifted

CLASSES = ("a", "b", "c")


def hand_made() -> Evaluation:
    """Six images of three classes; true 0,0,1,1,2,2 predicted 0,1,1,1,0,2."""
    probs = np.array(
        [[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.2, 0.6]],
        dtype=np.float32,
    )
    return Evaluation(
        labels=np.array([0, 0, 1, 1, 2, 2]), predictions=probs.argmax(1), probabilities=probs, loss=0.7, classes=CLASSES
    )


def test_accuracy_confusion_precision_recall_by_hand():
    ev = hand_made()
    assert ev.accuracy == pytest.approx(4 / 6)
    assert ev.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert ev.confusion.dtype == np.int64
    assert ev.per_class_accuracy.tolist() == pytest.approx([0.5, 1.0, 0.5])
    assert ev.recall.tolist() == pytest.approx([0.5, 1.0, 0.5])
    assert ev.precision.tolist() == pytest.approx([0.5, 2 / 3, 1.0])
    summary = ev.summary()
    assert summary["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]] and summary["count"] == 6


def test_class_never_predicted_has_undefined_precision():
    ev = hand_made()
    ev.predictions = np.array([0, 0, 1, 1, 0, 0])
    assert np.isnan(ev.precision[2]) and ev.summary()["precision"][2] is None


def test_misclassified_filters_and_sorts_by_confidence():
    ev = hand_made()  # wrong: image 1 (true a, said b, 0.6) and image 4 (true c, said a, 0.9)
    assert misclassified(ev).tolist() == [4, 1]
    assert misclassified(ev, sort="confidence-asc").tolist() == [1, 4]
    assert misclassified(ev, sort="index").tolist() == [1, 4]
    assert misclassified(ev, true_class="c").tolist() == [4]
    assert misclassified(ev, predicted_class=1).tolist() == [1]
    assert misclassified(ev, true_class=0, predicted_class="a").tolist() == []
    with pytest.raises(UserError, match="not a class"):
        misclassified(ev, true_class="dog")
    with pytest.raises(UserError, match="sort"):
        misclassified(ev, sort="random")


class PixelOracle(nn.Module):
    """Predicts the class written in pixel (0, 0) of the red channel, undoing the normalisation; remembers
    whether it ran in training mode."""

    def __init__(self, asymmetric: bool = False):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))
        self.asymmetric = asymmetric
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        value = (x[:, 0, 0, 0] * CIFAR10_STD[0] + CIFAR10_MEAN[0]) * 255  # (N,) the raw pixel
        logits = self.scale * nn.functional.one_hot(value.round().long().clamp(0, 9), 10).float()
        if self.asymmetric:  # row 1's right-hand pixel votes for class 9: differs between image and mirror
            logits[:, 9] += x[:, 0, 1, -1]
        return logits


def oracle_images(classes: list[int]) -> torch.Tensor:
    images = torch.zeros(len(classes), 3, 32, 32, dtype=torch.uint8)
    images[:, 0, 0, 0] = images[:, 0, 0, 31] = torch.tensor(classes, dtype=torch.uint8)  # same in the mirror
    return images


def test_evaluate_runs_the_model_and_restores_its_mode():
    model = PixelOracle().train()
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 3])
    said = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 7]  # the last image is wrong
    ev = evaluate(model, oracle_images(said), labels, batch_size=5)
    assert model.training and model.modes == [False, False, False]
    assert ev.predictions.tolist() == said
    assert ev.accuracy == pytest.approx(11 / 12)
    assert ev.probabilities.shape == (12, 10) and ev.probabilities.dtype == np.float32
    assert np.allclose(ev.probabilities.sum(1), 1, atol=1e-6)
    expected_loss = -np.log(np.exp(4) / (np.exp(4) + 9)) * 11 / 12 + -np.log(1 / (np.exp(4) + 9)) / 12
    assert ev.loss == pytest.approx(expected_loss, rel=1e-5)
    assert ev.confusion[3, 7] == 1 and ev.confusion.sum() == 12
    assert misclassified(ev).tolist() == [11]


def test_tta_flip_averages_the_image_and_its_mirror():
    images = oracle_images([2, 2])
    images[0, 0, 1, 31] = 255  # a bright right-hand pixel: votes for class 9 unmirrored only
    model = PixelOracle(asymmetric=True)
    plain = evaluate(model, images, torch.tensor([2, 2]))
    both = evaluate(model, images, torch.tensor([2, 2]), tta_flip=True)
    assert plain.probabilities[0, 9] > both.probabilities[0, 9] > plain.probabilities[1, 9]


def test_shifted_moves_the_pixels_and_reflects_the_uncovered_border():
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).view(1, 2, 5, 6)
    down_right = shifted(x, 1, 1)
    assert torch.equal(down_right[..., 1:, 1:], x[..., :-1, :-1])
    assert torch.equal(down_right[..., 0, 1:], x[..., 1, :-1])  # the row above the top is the reflected row 1
    up = shifted(x, -1, 0)
    assert torch.equal(up[..., :-1, :], x[..., 1:, :]) and torch.equal(up[..., -1, :], x[..., -2, :])
    assert shifted(x, 0, 0) is x and shifted(x, 0, -2).shape == x.shape


@pytest.mark.parametrize("tta_flip", [False, True])
def test_tta_shift_weights_the_image_and_its_two_diagonal_shifts(tta_flip):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    x = normalize(images)

    def one(view):
        return 0.5 * (model(view) + model(view.flip(3))) if tta_flip else model(view)

    with torch.no_grad():
        expected = 0.5 * one(x) + 0.25 * one(shifted(x, -1, -1)) + 0.25 * one(shifted(x, 1, 1))
    got = predict_logits(model, images, batch_size=3, tta_flip=tta_flip, tta_shift=True)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, predict_logits(model, images, tta_flip=tta_flip), atol=1e-3)


def test_save_and_load_round_trip(tmp_path):
    ev = hand_made()
    path = ev.save(tmp_path / "predictions.npz")
    again = Evaluation.load(path)
    assert again.classes == CLASSES and again.loss == pytest.approx(0.7)
    assert np.array_equal(again.probabilities, ev.probabilities) and np.array_equal(again.labels, ev.labels)
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.npz"]  # no temp file left behind


def test_damaged_or_missing_file_is_a_user_error_naming_it(tmp_path):
    path = tmp_path / "predictions.npz"
    with pytest.raises(EvaluationFileError, match="no predictions file"):
        Evaluation.load(path)
    hand_made().save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EvaluationFileError, match=r"predictions.npz.*damaged"):
        Evaluation.load(path)


def test_labels_and_images_must_agree():
    with pytest.raises(UserError, match="3 images but 2 labels"):
        evaluate(PixelOracle(), oracle_images([1, 2, 3]), torch.tensor([1, 2]))


def test_top_k_lists_the_most_probable_classes_first():
    ev = hand_made()
    assert ev.top_k(3, 3) == [("b", pytest.approx(0.5)), ("c", pytest.approx(0.4)), ("a", pytest.approx(0.1))]
    assert [name for name, _ in ev.top_k(5, 2)] == ["c", "a"]  # a tie (0.2, 0.2) keeps class order
