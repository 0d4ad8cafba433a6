//! The report's honesty and form: a cut-short exploration never claims
//! "holds", names parse, reports serialize to JSON.

use endio_model::{Config, Design, Property, Question, Verdict, check};

#[test]
fn bound_reached_is_not_holds() {
    let config = Config {
        max_states: 10,
        ..Config::default()
    };
    let report = check(Question::NoStrandedAfterRollback, Design::V6Fixed, &config);
    let case = &report.cases[0];
    assert!(case.bound_reached);
    assert_eq!(case.states, 10);
    for property in [Property::NothingStranded, Property::ExactlyOnce] {
        assert_eq!(
            report.verdict("as designed", property),
            Some(Verdict::BoundReached),
            "{property}"
        );
    }
}

#[test]
fn a_violation_within_the_bound_is_still_reported() {
    // The sleeping lock in atomic context is one step away.
    let config = Config {
        max_states: 3,
        ..Config::default()
    };
    let report = check(Question::NoSleepingLockInAtomic, Design::V6, &config);
    assert_eq!(
        report.verdict("PREEMPT_RT", Property::NoSleepInAtomic),
        Some(Verdict::Violated)
    );
}

#[test]
fn names_parse() {
    for design in Design::ALL {
        assert_eq!(design.name().parse::<Design>(), Ok(design));
    }
    for question in Question::ALL {
        assert_eq!(question.id().parse::<Question>(), Ok(question));
        assert_eq!(
            question.id().to_uppercase().parse::<Question>(),
            Ok(question)
        );
    }
    let error = "v7".parse::<Design>().unwrap_err().to_string();
    assert!(error.contains("v6, v6-fixed and merged"), "{error}");
    assert!("q7".parse::<Question>().is_err());
}

#[test]
fn reports_serialize() {
    let report = check(
        Question::NoStrandedAfterRollback,
        Design::V6,
        &Config::default(),
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["question"], "q4");
    assert_eq!(json["design"], "v6");
    let result = &json["cases"][0]["results"][0];
    assert_eq!(result["property"], "nothing-stranded");
    assert_eq!(result["verdict"], "violated");
    assert_eq!(result["asked"], true);
    assert!(result["counterexample"]["steps"].as_array().unwrap().len() == 5);
    assert!(json["cases"][0]["time_ms"].as_f64().unwrap() >= 0.0);
}

#[test]
fn every_question_on_every_design_completes_within_the_default_bound() {
    for question in Question::ALL {
        for design in Design::ALL {
            let report = check(question, design, &Config::default());
            assert!(!report.cases.is_empty());
            for case in &report.cases {
                assert!(!case.bound_reached, "{question} {design} {}", case.name);
                assert!(
                    case.results
                        .iter()
                        .all(|r| r.verdict != Verdict::BoundReached)
                );
            }
        }
    }
}
