"""
Tests of the training recipe of `scripts/train_image_classification.py`: `--recipe imagenet` as data (scripts/recipes/
imagenet.json, flags winning over it, abbreviations refused, the resolved values written back), its pieces from timm
(`create_transform`, `Mixup` with label smoothing, `SoftTargetCrossEntropy`, `ModelEmaV3`), the per-sample seeds, and
the EMA through the command line. Expected values come from timm itself or from the definitions (a Mixup of two images
with the weight its soft label gives, an EMA recomputed from the checkpoints' live weights), not from the code's own
output.
"""

import json
import random
from pathlib import Path

import image_data
import numpy as np
import pytest
import torch
import train_image_classification as script
import training_common
from safetensors.torch import load_file
from timm.data import create_transform
from training_utils import TINY_MODEL_ARGS, load_weights, make_image_folder, read_json, run_script
from transformers import AutoImageProcessor, AutoModelForImageClassification, HfArgumentParser

import vision_bigbird_hf

NUM_LABELS = 4
SMOOTHING = 0.1
RECIPE = json.loads((Path(training_common.RECIPES_DIR) / "imagenet.json").read_text())


def parse(args: list[str]):
    """The script's four argument groups, as its `main` parses them."""
    groups = (script.ModelArguments, script.DataTrainingArguments, script.RecipeArguments, script.TrainingArguments)
    return training_common.parse_with_recipe(HfArgumentParser(groups, allow_abbrev=False), args)


def imagenet_recipe() -> script.RecipeArguments:
    return parse(["--recipe", "imagenet", "--output_dir", "unused"])[2]


def training_examples(num_examples: int = 4) -> list[dict]:
    """Examples as the training dataset yields them: image i is the constant i + 1, its label i (modulo 4)."""
    return [
        {
            "pixel_values": torch.full((3, 8, 8), float(index + 1)),
            "labels": index % NUM_LABELS,
            "sample_key": (0, index),
        }
        for index in range(num_examples)
    ]


def collate(recipe_args, examples, seed=0):
    mix = script.build_batch_mix(recipe_args, NUM_LABELS, SMOOTHING)
    return image_data.ImageCollator(mix, seed)(examples)


# ---- The recipe as data ------------------------------------------------------------------------------------


def test_every_recipe_value_is_a_flag_with_a_source():
    assert RECIPE["values"].keys() == RECIPE["sources"].keys()
    model_args, data_args, recipe_args, training_args = parse(["--recipe", "imagenet", "--output_dir", "unused"])
    fields = {**vars(model_args), **vars(data_args), **vars(recipe_args), **training_args.to_dict()}
    for name, value in RECIPE["values"].items():
        assert name in fields, name
        assert fields[name] == value, name  # what the file says reaches the arguments
    assert recipe_args.auto_augment == "rand-m9-mstd0.5-inc1" and training_args.label_smoothing_factor == 0.1


def test_explicit_flags_win_over_the_recipe_and_abbreviations_are_refused(tmp_path):
    _, _, recipe_args, training_args = parse(
        ["--cutmix_alpha", "0.5", "--recipe", "imagenet", "--weight_decay", "0.1", "--output_dir", "unused"]
    )
    assert (recipe_args.cutmix_alpha, training_args.weight_decay) == (0.5, 0.1)  # given: kept
    assert (recipe_args.mixup_alpha, training_args.max_grad_norm) == (0.8, 5.0)  # not given: the recipe's
    for abbreviated in (["--cutmix_a", "0.5"], ["--weight_dec", "0.1"]):  # the parser is built with allow_abbrev=False
        with pytest.raises(ValueError, match=f"not used by the HfArgumentParser: \\['{abbreviated[0]}'"):
            parse(["--recipe", "imagenet", "--output_dir", "unused", *abbreviated])
    (tmp_path / "args.json").write_text(json.dumps({"recipe": "imagenet", "cutmix_alpha": 0.3, "output_dir": "x"}))
    _, _, recipe_args, _ = parse([str(tmp_path / "args.json")])
    assert (recipe_args.cutmix_alpha, recipe_args.mixup_alpha) == (0.3, 0.8)  # a .json file of arguments alike
    with pytest.raises(script.InvalidArgument, match="--recipe imagenet1: no such recipe"):
        parse(["--recipe", "imagenet1", "--output_dir", "unused"])


def test_learning_rate_scales_with_the_global_batch_and_an_explicit_one_is_not_overridden():
    _, _, recipe_args, training_args = parse(["--recipe", "imagenet", "--output_dir", "unused"])
    training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps = 64, 2
    script.resolve_learning_rate(recipe_args, training_args)
    assert training_args.learning_rate == pytest.approx(1e-3 * 128 / 1024)  # Swin/DeiT: 5e-4 per 512 images
    model_args, data_args, recipe_args, training_args = parse(
        ["--recipe", "imagenet", "--learning_rate", "3e-4", "--output_dir", "unused"]
    )
    with pytest.raises(script.InvalidArgument, match="--learning_rate 0.0003 and --learning_rate_per_1024_images"):
        script.validate_arguments(model_args, data_args, recipe_args, training_args)
    flags = ["--recipe", "imagenet", "--learning_rate", "3e-4", "--learning_rate_per_1024_images", "0"]
    _, _, recipe_args, training_args = parse([*flags, "--output_dir", "unused"])
    script.resolve_learning_rate(recipe_args, training_args)
    assert training_args.learning_rate == 3e-4


# ---- The pieces from timm --------------------------------------------------------------------------------


def test_recipe_train_transform_is_timms_create_transform():
    image_processor = vision_bigbird_hf.VisionBigBirdImageProcessor()
    script.override_image_size(image_processor, 32)
    ours = script.build_train_transform(image_processor, imagenet_recipe())
    timms = create_transform(
        32, is_training=True, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel",
        interpolation="bicubic", mean=tuple(image_processor.image_mean), std=tuple(image_processor.image_std),
    )  # fmt: skip
    image = script.PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 36, 3), dtype=np.uint8))
    outputs = []
    for seed in (3, 3, 4):
        for transform in (ours, timms):
            with image_data.seeded_cpu_rng(seed):
                outputs.append(transform(image))
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[2], outputs[3])  # the same draws as timm's
    assert torch.equal(outputs[0], outputs[2]) and not torch.equal(outputs[0], outputs[4])  # a function of the seed


def test_seeded_generators_cover_python_numpy_and_torch_and_restore_them():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    draws = []
    for _ in range(2):
        with image_data.seeded_cpu_rng(5):
            draws.append((random.random(), np.random.rand(), torch.rand(()).item()))
        random.random(), np.random.rand(), torch.rand(())  # the global streams move on between the two
    assert draws[0] == draws[1]
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with image_data.seeded_cpu_rng(5):
        random.random(), np.random.rand(), torch.rand(())
    assert random.getstate() == states[0] and (np.random.get_state()[1] == states[1]).all()
    assert torch.equal(torch.get_rng_state(), states[2])


def soft_label_weight(targets: torch.Tensor, index: int) -> float:
    """The mixing weight lam of example `index`, from its smoothed soft target: lam * on + (1 - lam) * off."""
    off, on = SMOOTHING / NUM_LABELS, 1 - SMOOTHING + SMOOTHING / NUM_LABELS
    return float((targets[index, index] - off) / (on - off))


def test_mixup_targets_sum_to_one_carry_the_smoothing_and_weigh_the_pixels():
    recipe_args = script.RecipeArguments(mixup_alpha=0.8)
    batch = collate(recipe_args, training_examples())
    labels, pixel_values = batch["labels"], batch["pixel_values"]
    assert labels.shape == (4, NUM_LABELS)
    torch.testing.assert_close(labels.sum(dim=1), torch.ones(4))
    weight = soft_label_weight(labels, 0)
    assert 0 < weight < 1
    for index in range(4):
        partner = 3 - index  # timm's batch mode mixes the batch with its flip
        others = [label for label in range(NUM_LABELS) if label not in (index, partner)]
        torch.testing.assert_close(labels[index, others], torch.full((len(others),), SMOOTHING / NUM_LABELS))
        assert soft_label_weight(labels, index) == pytest.approx(weight)
        expected = weight * (index + 1) + (1 - weight) * (partner + 1)
        torch.testing.assert_close(pixel_values[index], torch.full((3, 8, 8), expected), rtol=1e-5, atol=1e-5)


def test_cutmix_pastes_a_box_whose_area_is_the_soft_label():
    batch = collate(script.RecipeArguments(cutmix_alpha=1.0), training_examples(), seed=3)
    labels, pixel_values = batch["labels"], batch["pixel_values"]
    torch.testing.assert_close(labels.sum(dim=1), torch.ones(4))
    for index in range(4):
        partner = 3 - index
        own = (pixel_values[index] == index + 1).float().mean()
        pasted = (pixel_values[index] == partner + 1).float().mean()
        assert own + pasted == 1  # every pixel comes from one of the two images
        assert soft_label_weight(labels, index) == pytest.approx(float(own))


def test_an_odd_batch_mixes_its_pairs_and_smooths_the_last_label():
    batch = collate(script.RecipeArguments(mixup_alpha=0.8), training_examples(5))
    labels = batch["labels"]
    torch.testing.assert_close(labels.sum(dim=1), torch.ones(5))
    expected_last = torch.full((NUM_LABELS,), SMOOTHING / NUM_LABELS)
    expected_last[0] += 1 - SMOOTHING  # example 4 has label 0: its label-smoothed one-hot target
    torch.testing.assert_close(labels[4], expected_last)
    assert batch["pixel_values"][4].eq(5.0).all()  # not mixed
    assert 0 < soft_label_weight(labels, 0) < 1  # the first four are mixed in pairs (0, 3) and (1, 2)


def test_mixing_depends_on_the_batch_and_not_on_the_global_generators():
    recipe_args = script.RecipeArguments(mixup_alpha=0.8, cutmix_alpha=1.0)
    outputs = []
    for seed in (1, 2):
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        outputs.append(collate(recipe_args, training_examples()))
    torch.testing.assert_close(outputs[0]["labels"], outputs[1]["labels"])
    torch.testing.assert_close(outputs[0]["pixel_values"], outputs[1]["pixel_values"])
    evaluation = collate(recipe_args, [{"pixel_values": torch.zeros(3, 8, 8), "labels": 1}])  # no sample key
    assert evaluation["labels"].tolist() == [1]


def test_kinds_of_batch_mixing_follow_the_switch_probability():
    recipe_args = script.RecipeArguments(mixup_alpha=0.8, cutmix_alpha=1.0, mixup_switch_prob=0.5)
    kinds = []
    for step in range(40):
        examples = training_examples()
        for example in examples:
            example["sample_key"] = (step, example["sample_key"][1])
        pixel_values = collate(recipe_args, examples)["pixel_values"]
        kinds.append("cutmix" if set(pixel_values[0].unique().tolist()) <= {1.0, 4.0} else "mixup")
    assert 8 <= kinds.count("cutmix") <= 32


def test_augmentation_is_a_function_of_seed_epoch_and_sample_index(tmp_path):
    folder = make_image_folder(tmp_path / "train", images_per_class=2, seed=0)
    dataset = image_data.load_dataset("imagefolder", data_files={"train": str(folder / "**")}, cache_dir=str(tmp_path))
    image_processor = vision_bigbird_hf.VisionBigBirdImageProcessor()
    script.override_image_size(image_processor, 32)
    transform = script.build_train_transform(image_processor, imagenet_recipe())

    def pixels(seed: int, epoch: int, index: int) -> torch.Tensor:
        train = image_data.ImageClassificationDataset(
            dataset["train"], "train", "image", "label", train_transform=transform, seed=seed
        )
        train.set_epoch(epoch)
        random.seed(index), np.random.seed(epoch), torch.manual_seed(index * 100 + epoch)  # must not matter
        return train[index]["pixel_values"]

    assert torch.equal(pixels(0, 1, 3), pixels(0, 1, 3))
    assert not torch.equal(pixels(0, 1, 3), pixels(0, 2, 3))
    assert not torch.equal(pixels(0, 1, 3), pixels(1, 1, 3))


def test_soft_target_loss_is_timms_with_the_smoothing_for_label_ids():
    logits = torch.randn(5, NUM_LABELS)
    labels = torch.tensor([0, 3, 1, 1, 2])
    one_hot = torch.nn.functional.one_hot(labels, NUM_LABELS).float()
    soft = 0.7 * one_hot + 0.3 * one_hot.roll(1, dims=0)  # soft targets arrive already smoothed (by Mixup)
    loss = script.SoftTargetLoss(NUM_LABELS, SMOOTHING)
    expected_soft = -(soft * logits.log_softmax(dim=-1)).sum(dim=-1).mean()
    torch.testing.assert_close(loss({"logits": logits}, soft), expected_soft)
    # within an accumulated batch of 10 examples, as the Trainer counts them (label elements)
    num_items = torch.tensor(10 * NUM_LABELS)
    torch.testing.assert_close(loss({"logits": logits}, soft, num_items_in_batch=num_items), expected_soft / 2)
    torch.testing.assert_close(loss({"logits": logits}, labels), expected_hard(logits, labels, SMOOTHING))
    hard_halved = loss({"logits": logits}, labels, num_items_in_batch=torch.tensor(10))
    torch.testing.assert_close(hard_halved, expected_hard(logits, labels, SMOOTHING) / 2)


def expected_hard(logits, labels, smoothing):
    """Cross-entropy against label-smoothed one-hot targets, written out."""
    num_labels = logits.shape[1]
    smoothed = torch.nn.functional.one_hot(labels, num_labels).float() * (1 - smoothing) + smoothing / num_labels
    return -(smoothed * logits.log_softmax(dim=-1)).sum(dim=-1).mean()


# ---- Through the command line: label smoothing, soft labels, the EMA -------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return make_image_folder(root / "train", 6, seed=0), make_image_folder(root / "validation", 2, seed=1)


def evaluation_loss(model_dir, validation_dir, label_smoothing: float, weights=None) -> float:
    """The validation loss recomputed outside the script: pipeline-equivalent preprocessing, textbook formula."""
    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    if weights is not None:
        model.load_state_dict(weights)
    image_processor = AutoImageProcessor.from_pretrained(model_dir)
    paths = sorted(validation_dir.glob("*/*.png"))
    labels = torch.tensor([model.config.label2id[path.parent.name] for path in paths])
    images = [script.PIL.Image.open(path) for path in paths]
    with torch.no_grad():
        logits = model(**image_processor(images, return_tensors="pt")).logits
    return expected_hard(logits, labels, label_smoothing).item()


def test_label_smoothing_and_mixup_reach_the_loss_and_problem_type_stays_single_label(folders, tmp_path):
    train_dir, validation_dir = folders
    output_dir = tmp_path / "out"
    args = [
        *TINY_MODEL_ARGS,
        "--train_dir", str(train_dir), "--validation_dir", str(validation_dir),
        "--output_dir", str(output_dir), "--do_train", "--do_eval",
        "--max_steps", "2", "--per_device_train_batch_size", "6", "--per_device_eval_batch_size", "6",
        "--mixup_alpha", "0.8", "--cutmix_alpha", "1.0", "--label_smoothing_factor", "0.3",
        "--report_to", "none", "--cache_dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    script.main(args)
    config = read_json(output_dir / "config.json")
    assert config["problem_type"] == "single_label_classification"  # not multi-label BCE for the float labels
    eval_loss = read_json(output_dir / "eval_results.json")["eval_loss"]
    assert eval_loss == pytest.approx(evaluation_loss(output_dir, validation_dir, 0.3), rel=1e-4)
    assert eval_loss != pytest.approx(evaluation_loss(output_dir, validation_dir, 0.0), rel=1e-3)


def test_ema_weights_are_the_ones_evaluated_and_saved(folders, tmp_path):
    train_dir, validation_dir = folders
    output_dir, decay = tmp_path / "out", 0.6
    args = [
        *TINY_MODEL_ARGS,
        "--train_dir", str(train_dir), "--validation_dir", str(validation_dir),
        "--output_dir", str(output_dir), "--do_train", "--do_eval",
        "--max_steps", "3", "--save_steps", "1", "--eval_strategy", "steps", "--eval_steps", "1",
        "--per_device_train_batch_size", "6", "--learning_rate", "5e-3", "--ema_decay", str(decay),
        "--report_to", "none",
    ]  # fmt: skip
    run_script(args, cache_dir=tmp_path / "cache")
    live = [load_weights(output_dir / f"checkpoint-{step}") for step in (1, 2, 3)]  # checkpoints hold the live model
    saved = load_weights(output_dir)
    for name, weight in saved.items():
        if not weight.is_floating_point():
            continue
        # AveragedModel: the first update copies, then ema = decay * ema + (1 - decay) * live
        expected = live[0][name]
        for step in (1, 2):
            expected = decay * expected + (1 - decay) * live[step][name]
        torch.testing.assert_close(weight, expected, msg=name)
    assert any(not torch.equal(saved[name], live[2][name]) for name in saved)
    # each checkpoint holds the EMA as safetensors, beside the live weights it trained on
    averaged = [load_file(output_dir / f"checkpoint-{step}" / script.ModelEmaCallback.file_name) for step in (1, 2, 3)]
    assert all(torch.equal(averaged[2][name], weight) for name, weight in saved.items())
    assert any(not torch.equal(averaged[1][name], live[1][name]) for name in saved)

    eval_loss = read_json(output_dir / "eval_results.json")["eval_loss"]
    assert eval_loss == pytest.approx(evaluation_loss(output_dir, validation_dir, 0.0), rel=1e-4)
    assert eval_loss != pytest.approx(evaluation_loss(output_dir, validation_dir, 0.0, weights=live[2]), rel=1e-4)
    # the evaluations during training: of the EMA at that step, the live weights back in the model afterwards
    history = read_json(output_dir / "trainer_state.json")["log_history"]
    during = {entry["step"]: entry["eval_loss"] for entry in history if "eval_loss" in entry}
    for step in (2, 3):
        recomputed = evaluation_loss(output_dir, validation_dir, 0.0, weights=averaged[step - 1])
        assert during[step] == pytest.approx(recomputed, rel=1e-4)


def test_training_recipe_json_holds_the_resolved_values(folders, tmp_path):
    train_dir, _ = folders
    output_dir = tmp_path / "out"
    args = [
        *TINY_MODEL_ARGS,
        "--train_dir", str(train_dir), "--output_dir", str(output_dir), "--do_train", "--recipe", "imagenet",
        "--cutmix_alpha", "0.5", "--max_steps", "1", "--per_device_train_batch_size", "6", "--report_to", "none",
    ]  # fmt: skip
    script.main(args)
    resolved = read_json(output_dir / "training_recipe.json")
    assert resolved["cutmix_alpha"] == 0.5 and resolved["per_device_train_batch_size"] == 6  # given
    for name in ("mixup_alpha", "auto_augment", "random_erasing_mode", "weight_decay", "label_smoothing_factor"):
        assert resolved[name] == RECIPE["values"][name], name  # the recipe's
    assert resolved["learning_rate"] == pytest.approx(1e-3 * 6 / 1024)  # resolved from the global batch
    assert resolved["drop_path_rate"] == 0.2 == read_json(output_dir / "config.json")["drop_path_rate"]
