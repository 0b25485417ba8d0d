//! Gate calibration on the shipped demo checkpoint: afterwards each gate keeps its trained
//! target fraction at threshold 0.5 on the calibration images, and a bundle written from the
//! calibrated model keeps the same tokens when the runtime (tract) runs it.

use svit_export::export::bundle::{self, BundleSpec};
use svit_export::export::gatecal::calibrate_gates;
use svit_runtime::{MinKeep, Model, Pruning, RunOptions};

mod common;

#[test]
fn calibrated_gates_keep_their_targets_in_the_bundle_too() {
    let (vm, net) = common::demo_with_vars();
    let (n, s) = (net.cfg.tokens(), net.cfg.image_size);
    let images = common::scenes(s, 7000, 12);
    let floor = MinKeep::uniform(16);
    let wrong = calibrate_gates(&vm, &net, &images, 0.5, floor, Some(&[0.5]), |_| ());
    assert!(wrong
        .unwrap_err()
        .to_string()
        .contains("1 gate targets for 6 gates"));
    let mut nan = vec![images[0].clone()];
    nan[0][5] = f32::NAN;
    let err = calibrate_gates(&vm, &net, &nan, 0.5, floor, None, |_| ()).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
    let shifts = calibrate_gates(&vm, &net, &images, 0.5, floor, None, |_| ()).unwrap();
    assert_eq!(shifts.len(), net.gates.len());
    for g in &shifts {
        assert!((g.kept_after - g.target).abs() < 0.02, "{g:?}");
    }
    assert!(
        shifts.iter().any(|g| g.logit_shift.abs() > 0.1),
        "the trained gates were already calibrated? {shifts:?}"
    );

    let dir = common::temp_dir("gatecal");
    let labels: Vec<String> = svit_scenes::CLASSES.iter().map(|s| s.to_string()).collect();
    let spec = BundleSpec {
        name: "gatecal",
        labels: &labels,
        provenance: None,
        f16: false,
        int8: None,
        min_keep: Some(floor),
    };
    bundle::write(&net, &spec, &dir).unwrap();
    let model = Model::load(&dir, "f32").unwrap();
    let mut st = model.new_state(1).unwrap();
    let opts = RunOptions {
        pruning: Pruning::at(0.5, floor),
        decode: common::TEST_DECODE,
    };
    let mut kept = vec![0usize; shifts.len()];
    for img in &images {
        let out = model.run_tensor(&mut st, img, &opts).unwrap();
        for (k, &b) in kept.iter_mut().zip(&out.kept[net.cfg.first_gated..]) {
            *k += b;
        }
    }
    for (g, k) in shifts.iter().zip(kept) {
        let frac = k as f32 / (n * images.len()) as f32;
        assert!(
            (frac - g.kept_after).abs() < 0.01,
            "gate {}: tract {frac}, candle {}",
            g.gate,
            g.kept_after
        );
    }
}
