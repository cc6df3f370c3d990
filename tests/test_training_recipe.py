"""
Tests of the training recipe of `scripts/train_image_classification.py`: `--recipe imagenet` and its parts (torchvision
RandAugment, Mixup, CutMix, random erasing), the soft-target loss with label smoothing, the per-sample augmentation
seeds and the weight EMA. Expected values come from the definitions (a Mixup of two images with the weight its soft
label gives, an EMA recomputed from the checkpoints' live weights), not from the code's own output.
"""

import image_data
import numpy as np
import pytest
import torch
import train_image_classification as script
from training_utils import TINY_MODEL_ARGS, load_weights, make_image_folder, read_json, run_script
from transformers import AutoImageProcessor, AutoModelForImageClassification

import vision_bigbird_hf

NUM_LABELS = 4


def recipe(**values) -> script.RecipeArguments:
    recipe_args = script.RecipeArguments(**values)
    script.resolve_recipe(recipe_args, script.TrainingArguments(output_dir="unused", report_to="none"), set())
    return recipe_args


def training_examples(num_examples: int = 4) -> list[dict]:
    """Examples as the training dataset yields them: image i is the constant i + 1, its label i."""
    return [
        {"pixel_values": torch.full((3, 8, 8), float(index + 1)), "labels": index, "sample_key": (0, index)}
        for index in range(num_examples)
    ]


def test_imagenet_recipe_values_and_explicit_flags_win():
    training_args = script.TrainingArguments(output_dir="unused", per_device_train_batch_size=64, report_to="none")
    recipe_args = script.RecipeArguments(recipe="imagenet", mixup_alpha=0.2)
    script.resolve_recipe(recipe_args, training_args, given={"mixup_alpha", "weight_decay"})
    assert recipe_args.mixup_alpha == 0.2  # given
    assert (recipe_args.cutmix_alpha, recipe_args.random_erasing_prob, recipe_args.rand_augment) == (
        1.0,
        0.25,
        "rand-m9-n2",
    )
    assert training_args.label_smoothing_factor == 0.1
    assert training_args.weight_decay == 0.0  # --weight_decay given (as its default): the recipe leaves it
    assert training_args.learning_rate == pytest.approx(1e-3 * 64 / 1024)  # 1e-3 per 1024 images
    assert training_args.lr_scheduler_type.value == "cosine_with_min_lr" and training_args.max_grad_norm == 5.0
    # Swin: TRAIN.MIN_LR 5e-6 of TRAIN.BASE_LR 5e-4, TRAIN.WARMUP_EPOCHS 20 of TRAIN.EPOCHS 300
    assert training_args.lr_scheduler_kwargs == {"min_lr_rate": pytest.approx(5e-6 / 5e-4)}
    assert training_args.warmup_steps == pytest.approx(20 / 300)

    plain = script.TrainingArguments(output_dir="unused", report_to="none")
    script.resolve_recipe(script.RecipeArguments(recipe="none"), plain, given=set())
    assert plain.label_smoothing_factor == 0.0 and plain.learning_rate == 5e-5


@pytest.mark.parametrize("preset, drop_path_rate", [("tiny", 0.2), ("small", 0.3), ("base", 0.5)])
def test_imagenet_recipe_sets_swin_stochastic_depth_per_preset(preset, drop_path_rate):
    config = script.build_config(script.ModelArguments(model_preset=preset), recipe(recipe="imagenet"))
    assert config.drop_path_rate == drop_path_rate
    overridden = script.ModelArguments(model_preset=preset, config_overrides='{"drop_path_rate": 0.05}')
    assert script.build_config(overridden, recipe(recipe="imagenet")).drop_path_rate == 0.05


def test_mixup_gives_soft_labels_summing_to_one_with_pixels_mixed_by_the_same_weight():
    collate = script.ImageCollator(script.build_batch_mix(recipe(mixup_alpha=0.8), NUM_LABELS), seed=0)
    batch = collate(training_examples())
    labels, pixel_values = batch["labels"], batch["pixel_values"]
    assert labels.shape == (4, NUM_LABELS)
    torch.testing.assert_close(labels.sum(dim=1), torch.ones(4))
    weight = labels[0, 0]  # example i is mixed with example i - 1 (torchvision rolls the batch by one)
    assert 0 < weight < 1
    for index in range(4):
        partner = (index - 1) % 4
        assert labels[index, index] == pytest.approx(float(weight)) and labels[index, partner] == pytest.approx(
            1 - float(weight)
        )
        expected = weight * (index + 1) + (1 - weight) * (partner + 1)
        torch.testing.assert_close(pixel_values[index], torch.full((3, 8, 8), float(expected)))


def test_cutmix_pastes_a_box_whose_area_is_the_soft_label():
    collate = script.ImageCollator(script.build_batch_mix(recipe(cutmix_alpha=1.0), NUM_LABELS), seed=3)
    batch = collate(training_examples())
    labels, pixel_values = batch["labels"], batch["pixel_values"]
    torch.testing.assert_close(labels.sum(dim=1), torch.ones(4))
    for index in range(4):
        partner = (index - 1) % 4
        own = (pixel_values[index] == index + 1).float().mean()
        pasted = (pixel_values[index] == partner + 1).float().mean()
        assert own + pasted == 1  # every pixel comes from one of the two images
        assert labels[index, index] == pytest.approx(float(own))


def test_mixing_depends_on_the_batch_and_not_on_the_global_generator():
    collate = script.ImageCollator(script.build_batch_mix(recipe(mixup_alpha=0.8, cutmix_alpha=1.0), NUM_LABELS), 0)
    torch.manual_seed(1)
    first = collate(training_examples())
    state = torch.get_rng_state()
    torch.manual_seed(2)
    second = collate(training_examples())
    torch.testing.assert_close(first["labels"], second["labels"])
    torch.testing.assert_close(first["pixel_values"], second["pixel_values"])
    torch.manual_seed(1)
    collate(training_examples())
    assert torch.equal(torch.get_rng_state(), state)  # the model's random stream is left where it was
    evaluation = collate([{"pixel_values": torch.zeros(3, 8, 8), "labels": 1}])  # no sample key: not mixed
    assert evaluation["labels"].tolist() == [1]


def test_kinds_of_batch_mixing_follow_the_switch_probability():
    mix = script.build_batch_mix(recipe(mixup_alpha=0.8, cutmix_alpha=1.0, mixup_switch_prob=0.5), NUM_LABELS)
    kinds = []
    for step in range(40):
        examples = training_examples()
        for example in examples:
            example["sample_key"] = (step, example["sample_key"][1])
        pixel_values = script.ImageCollator(mix, seed=0)(examples)["pixel_values"]
        kinds.append("cutmix" if set(pixel_values[0].unique().tolist()) <= {1.0, 4.0} else "mixup")
    assert 8 <= kinds.count("cutmix") <= 32


def test_random_erasing_replaces_one_box_and_leaves_the_rest():
    image_processor = vision_bigbird_hf.VisionBigBirdImageProcessor()
    script.override_image_size(image_processor, 32)
    image = script.PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    outputs = {}
    for probability in (0.0, 1.0):
        transform = script.build_train_transform(image_processor, recipe(random_erasing_prob=probability))
        with script.seeded_cpu_rng(7):
            outputs[probability] = transform(image)
    changed = (outputs[0.0] != outputs[1.0]).any(dim=0)  # (H, W)
    rows, columns = changed.any(dim=1).nonzero(), changed.any(dim=0).nonzero()
    box = changed[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    assert box.all() and changed.sum() == box.numel()  # one axis-aligned rectangle
    assert 0.02 <= box.numel() / changed.numel() <= 1 / 3  # timm/torchvision scale (0.02, 1/3)


def test_augmentation_is_a_function_of_seed_epoch_and_sample_index(tmp_path):
    folder = make_image_folder(tmp_path / "train", images_per_class=2, seed=0)
    dataset = image_data.load_dataset("imagefolder", data_files={"train": str(folder / "**")}, cache_dir=str(tmp_path))
    image_processor = vision_bigbird_hf.VisionBigBirdImageProcessor()
    script.override_image_size(image_processor, 32)
    transform = script.build_train_transform(image_processor, recipe(recipe="imagenet"))

    def pixels(seed: int, epoch: int, index: int) -> torch.Tensor:
        train = script.ImageClassificationDataset(
            dataset["train"], "train", "image", "label", train_transform=transform, seed=seed
        )
        train.set_epoch(epoch)
        torch.manual_seed(index * 100 + epoch)  # the global generator's state must not matter
        return train[index]["pixel_values"]

    assert torch.equal(pixels(0, 1, 3), pixels(0, 1, 3))
    assert not torch.equal(pixels(0, 1, 3), pixels(0, 2, 3))
    assert not torch.equal(pixels(0, 1, 3), pixels(1, 1, 3))


def test_parse_rand_augment():
    assert script.parse_rand_augment("rand-m9-n2") == (2, 9)
    assert script.parse_rand_augment("rand-m7-mstd0.5-inc1") == (2, 7)
    assert script.parse_rand_augment("none") is None and script.parse_rand_augment(None) is None
    for bad in ("rand-m11", "rand-n2", "augmix-m5", "rand-m9-inc0"):
        with pytest.raises(script.InvalidArgument, match=f"--rand_augment {bad}"):
            script.parse_rand_augment(bad)


def test_soft_target_loss_with_label_smoothing_is_the_textbook_formula():
    logits = torch.randn(5, NUM_LABELS)
    labels = torch.tensor([0, 3, 1, 1, 2])
    one_hot = torch.nn.functional.one_hot(labels, NUM_LABELS).float()
    soft = 0.7 * one_hot + 0.3 * one_hot.roll(1, dims=0)
    smoothing = 0.1
    log_probabilities = logits.log_softmax(dim=-1)
    for targets in (one_hot, soft):
        smoothed = targets * (1 - smoothing) + smoothing / NUM_LABELS
        expected = -(smoothed * log_probabilities).sum(dim=-1).mean()
        loss = script.SoftTargetCrossEntropy(smoothing)
        torch.testing.assert_close(loss({"logits": logits}, targets), expected)
        # within an accumulated batch of 10 examples, as the Trainer counts them (label elements)
        num_items = torch.tensor(10 * targets[0].numel())
        torch.testing.assert_close(loss({"logits": logits}, targets, num_items_in_batch=num_items), expected / 2)
    hard_loss = script.SoftTargetCrossEntropy(smoothing)({"logits": logits}, labels)
    torch.testing.assert_close(hard_loss, expected_hard(logits, labels, smoothing))


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
        "--max_steps", "3", "--save_steps", "1", "--per_device_train_batch_size", "6",
        "--learning_rate", "5e-3", "--ema_decay", str(decay),
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
    assert (output_dir / "checkpoint-3" / script.WeightEMA.file_name).is_file()

    eval_loss = read_json(output_dir / "eval_results.json")["eval_loss"]
    assert eval_loss == pytest.approx(evaluation_loss(output_dir, validation_dir, 0.0), rel=1e-4)
    assert eval_loss != pytest.approx(evaluation_loss(output_dir, validation_dir, 0.0, weights=live[2]), rel=1e-4)
