//! A corpus of malformed and ill-typed policies: each one, loaded alone (as `case.cedar`),
//! refuses the whole set with [`PolicyError::Invalid`], and the first problem names the exact
//! line, the policy id and what is wrong. Every expectation was pinned from what the loader
//! and Cedar (strict validation) actually say; a case that loads fails the test.

use std::path::{Path, PathBuf};

use broker::policy::{Policies, PolicyError, Problem};

/// One malformed policy file and what the loader must say about it.
struct Case {
    name: &'static str,
    /// Loaded as `earlier.cedar`, before the case, when set.
    earlier: Option<&'static str>,
    /// Loaded as `case.cedar`.
    text: &'static str,
    /// The first problem's line.
    line: Option<usize>,
    /// The first problem's policy id.
    policy: Option<&'static str>,
    /// Substrings of the first problem's message.
    message: &'static [&'static str],
}

const fn case(
    name: &'static str,
    text: &'static str,
    line: Option<usize>,
    policy: Option<&'static str>,
    message: &'static [&'static str],
) -> Case {
    Case {
        name,
        earlier: None,
        text,
        line,
        policy,
        message,
    }
}

/// Strict validation refuses what can never apply; the loader refuses warnings too.
const WARNING: &str = "(validation warnings are refused too)";
const NO_ACTION: &str = "unable to find an applicable action given the policy scope constraints";
const IMPOSSIBLE: &str = "policy is impossible: the policy expression evaluates to false";

const CASES: &[Case] = &[
    // ---- Syntax: the parser's line, no policy id.
    case(
        "missing_semicolon",
        "@id(\"a\")\npermit (principal, action, resource)\n\n@id(\"b\")\npermit (principal, action, resource);\n",
        Some(4),
        None,
        &["unexpected token `@`"],
    ),
    case(
        "unbalanced_brace",
        "@id(\"a\")\npermit (principal, action, resource)\nwhen { principal.signer.kind == \"key\" ;\n",
        Some(3),
        None,
        &["unexpected token `;`"],
    ),
    case(
        "unbalanced_paren",
        "@id(\"a\")\npermit (principal, action, resource\nwhen { true };\n",
        Some(3),
        None,
        &["unexpected token `when`"],
    ),
    case(
        "bad_string_escape",
        "@id(\"a\")\npermit (principal, action, resource)\nwhen { principal.signer.identity == \"a\\qb\" };\n",
        Some(3),
        None,
        &["`\\q` is not a valid escape"],
    ),
    case(
        "unterminated_string",
        "@id(\"a\")\npermit (principal, action, resource)\nwhen { principal.signer.identity == \"abc };\n",
        Some(3),
        None,
        &["invalid token"],
    ),
    case(
        "unknown_keyword",
        "@id(\"a\")\nallow (principal, action, resource);\n",
        Some(2),
        None,
        &["invalid policy effect: allow"],
    ),
    case(
        "two_principals",
        "@id(\"a\")\npermit (principal, principal, action, resource);\n",
        Some(2),
        None,
        &["found the variable `principal` where the variable `action` must be used"],
    ),
    case(
        "missing_action_in_scope",
        "@id(\"a\")\npermit (principal, resource);\n",
        Some(2),
        None,
        &["found the variable `resource` where the variable `action` must be used"],
    ),
    case(
        "garbage_file",
        "}}} this is not cedar {{{\n",
        Some(1),
        None,
        &["unexpected token `}`"],
    ),
    case(
        "duplicate_annotation",
        "@id(\"a\")\n@id(\"b\")\npermit (principal, action, resource);\n",
        Some(2),
        None,
        &["duplicate annotation: @id"],
    ),
    case(
        "unknown_extension_function",
        "@id(\"a\")\npermit (principal, action, resource)\nwhen { frobnicate(\"x\") };\n",
        Some(3),
        None,
        &["`frobnicate` is not a valid function"],
    ),
    // ---- Ids and templates.
    case(
        "missing_id",
        "\n\npermit (principal, action, resource);\n",
        Some(3),
        None,
        &["no `@id(\"…\")` annotation"],
    ),
    case(
        "id_annotation_is_case_sensitive",
        "@id(\"ok\")\npermit (principal, action, resource);\n@ID(\"a\")\nforbid (principal, action, resource);\n",
        Some(3),
        None,
        &["no `@id(\"…\")` annotation"],
    ),
    case(
        "empty_id",
        "@id(\"\")\npermit (principal, action, resource);\n",
        Some(1),
        Some(""),
        &["an empty `@id`"],
    ),
    case(
        "blank_id",
        "\n@id(\"   \")\npermit (principal, action, resource);\n",
        Some(2),
        Some("   "),
        &["an empty `@id`"],
    ),
    case(
        "id_without_value",
        "@id\npermit (principal, action, resource);\n",
        Some(1),
        Some(""),
        &["an empty `@id`"],
    ),
    case(
        "duplicate_id_in_file",
        "@id(\"a\")\npermit (principal, action, resource);\n\n@id(\"a\")\nforbid (principal, action, resource);\n",
        Some(4),
        Some("a"),
        &["duplicate `@id`: also at case.cedar:1"],
    ),
    Case {
        name: "duplicate_id_across_files",
        earlier: Some("\n@id(\"a\")\npermit (principal, action, resource);\n"),
        text: "@id(\"b\")\npermit (principal, action, resource);\n@id(\"a\")\nforbid (principal, action, resource);\n",
        line: Some(3),
        policy: Some("a"),
        message: &["duplicate `@id`: also at earlier.cedar:2"],
    },
    case(
        "template_principal",
        "@id(\"t\")\npermit (principal == ?principal, action, resource);\n",
        None,
        None,
        &["templates (`?principal`, `?resource`) are not supported"],
    ),
    case(
        "template_resource",
        "@id(\"t\")\npermit (principal, action, resource in ?resource);\n",
        None,
        None,
        &["templates (`?principal`, `?resource`) are not supported"],
    ),
    // ---- Names the schema does not declare: the policy's first line and its id.
    case(
        "unknown_entity_type",
        "@id(\"u\")\npermit (principal == Warrant::User::\"alice\", action, resource);\n",
        Some(2),
        Some("u"),
        &["unrecognized entity type `Warrant::User`"],
    ),
    case(
        "undeclared_entity_literal",
        "@id(\"u\")\npermit (principal, action, resource)\nwhen { resource in Warrant::Bucket::\"b\" };\n",
        Some(3),
        Some("u"),
        &["unrecognized entity type `Warrant::Bucket`"],
    ),
    case(
        "unknown_action",
        "@id(\"u\")\npermit (principal, action == Warrant::Action::\"fs.delete\", resource);\n",
        Some(2),
        Some("u"),
        &["unrecognized action `Warrant::Action::\"fs.delete\"`"],
    ),
    case(
        "action_without_namespace",
        "@id(\"u\")\npermit (principal, action == Action::\"instantiate\", resource);\n",
        Some(2),
        Some("u"),
        &["unrecognized action `Action::\"instantiate\"`"],
    ),
    case(
        "unknown_attribute",
        "@id(\"u\")\npermit (principal, action, resource)\nwhen { principal.signr.kind == \"key\" };\n",
        Some(3),
        Some("u"),
        &["attribute `signr` on entity type `Warrant::Artifact` not found"],
    ),
    case(
        "unknown_signer_field",
        "@id(\"u\")\npermit (principal, action, resource)\nwhen { principal.signer.subject == \"x\" };\n",
        Some(3),
        Some("u"),
        &["attribute `signer.subject` on entity type `Warrant::Artifact` not found"],
    ),
    case(
        "context_typo",
        "@id(\"u\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource)\nwhen { context.memoryByte > 0 };\n",
        Some(3),
        Some("u"),
        &["attribute `memoryByte` in context for Warrant::Action::\"instantiate\" not found"],
    ),
    case(
        "context_memory_on_fs_read",
        "@id(\"u\")\npermit (principal, action == Warrant::Action::\"fs.read\", resource)\nwhen { context.memoryBytes > 0 };\n",
        Some(3),
        Some("u"),
        &["attribute `memoryBytes` in context for Warrant::Action::\"fs.read\" not found"],
    ),
    case(
        "get_tag_without_tags",
        "@id(\"u\")\npermit (principal, action, resource)\nwhen { principal.getTag(\"x\") == \"y\" };\n",
        Some(3),
        Some("u"),
        &["unable to guarantee safety of access to tag `\"x\"` on entity type `Warrant::Artifact`"],
    ),
    case(
        "missing_record_attribute",
        "@id(\"u\")\npermit (principal, action, resource)\nwhen { {a: 1}.b == 1 };\n",
        Some(3),
        Some("u"),
        &["attribute `b` not found"],
    ),
    // ---- Types.
    case(
        "size_bytes_is_not_a_string",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { principal.sizeBytes == \"big\" };\n",
        Some(3),
        Some("t"),
        &["the types Long and String are not compatible"],
    ),
    case(
        "signer_kind_is_not_a_long",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { principal.signer.kind == 1 };\n",
        Some(3),
        Some("t"),
        &["the types Long and String are not compatible"],
    ),
    case(
        "record_compared_to_string",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { principal.signer == \"key\" };\n",
        Some(3),
        Some("t"),
        &[
            "the types String and {",
            "kind: String",
            "are not compatible",
        ],
    ),
    case(
        "less_than_on_strings",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { principal.signer.identity < \"m\" };\n",
        Some(3),
        Some("t"),
        &["unexpected type: expected", "Long but saw String"],
    ),
    case(
        "optional_without_has",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { principal.provenance.builderId == \"x\" };\n",
        Some(3),
        Some("t"),
        &["unable to guarantee safety of access to optional attribute `provenance`"],
    ),
    case(
        "like_on_long",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { principal.sizeBytes like \"1*\" };\n",
        Some(3),
        Some("t"),
        &["unexpected type: expected String but saw Long"],
    ),
    case(
        "contains_on_string",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { principal.signer.identity.contains(\"x\") };\n",
        Some(3),
        Some("t"),
        &["unexpected type: expected Set<", "but saw String"],
    ),
    case(
        "contains_all_on_long",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { principal.sizeBytes.containsAll([1]) };\n",
        Some(3),
        Some("t"),
        &["unexpected type: expected Set<", "but saw Long"],
    ),
    case(
        "signers_contains_string",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { principal.signers.contains(\"x\") };\n",
        Some(3),
        Some("t"),
        &[
            "the types String and {",
            "identity: String",
            "are not compatible",
        ],
    ),
    case(
        "heterogeneous_set",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { [1, \"a\"].contains(principal.sizeBytes) };\n",
        Some(3),
        Some("t"),
        &["the types Long and String are not compatible"],
    ),
    case(
        "arithmetic_on_strings",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { principal.signer.identity + 1 > 0 };\n",
        Some(3),
        Some("t"),
        &["unexpected type: expected Long but saw String"],
    ),
    case(
        "negated_string",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { -principal.signer.issuer > 0 };\n",
        Some(3),
        Some("t"),
        &["unexpected type: expected Long but saw String"],
    ),
    case(
        "if_with_long_condition",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { if principal.sizeBytes then true else false };\n",
        Some(3),
        Some("t"),
        &["unexpected type: expected Bool but saw Long"],
    ),
    case(
        "when_is_a_long",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { principal.sizeBytes };\n",
        Some(3),
        Some("t"),
        &["unexpected type: expected Bool but saw Long"],
    ),
    case(
        "unless_is_a_string",
        "@id(\"t\")\nforbid (principal, action, resource)\nunless { principal.signer.kind };\n",
        Some(3),
        Some("t"),
        &["unexpected type: expected Bool but saw String"],
    ),
    case(
        "and_on_context_long",
        "@id(\"t\")\npermit (principal, action == Warrant::Action::\"instantiate\", resource)\nwhen { context.memoryBytes && true };\n",
        Some(3),
        Some("t"),
        &["unexpected type: expected Bool but saw Long"],
    ),
    case(
        "extension_constructor_of_attribute",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { ip(principal.signer.identity).isLoopback() };\n",
        Some(3),
        Some("t"),
        &["extension constructors may not be called with non-literal expressions"],
    ),
    case(
        "invalid_decimal_literal",
        "@id(\"t\")\npermit (principal, action, resource)\nwhen { decimal(\"not a number\") == decimal(\"1.0\") };\n",
        Some(3),
        Some("t"),
        &["failed to parse as a decimal value: `\"not a number\"`"],
    ),
    // ---- Impossible policies and scope mismatches (warnings, refused).
    case(
        "principal_is_a_dir",
        "@id(\"i\")\npermit (principal == Warrant::Dir::\"/\", action == Warrant::Action::\"instantiate\", resource);\n",
        Some(1),
        Some("i"),
        &[NO_ACTION, WARNING],
    ),
    case(
        "principal_is_dir_type",
        "@id(\"i\")\npermit (principal is Warrant::Dir, action, resource);\n",
        Some(1),
        Some("i"),
        &[NO_ACTION, WARNING],
    ),
    case(
        "artifact_in_host",
        "@id(\"i\")\nforbid (principal in Warrant::Host::\"x\", action, resource);\n",
        Some(1),
        Some("i"),
        &[NO_ACTION, WARNING],
    ),
    case(
        "resource_in_host_for_fs_read",
        "@id(\"i\")\npermit (principal, action == Warrant::Action::\"fs.read\", resource in Warrant::Host::\"x\");\n",
        Some(1),
        Some("i"),
        &[NO_ACTION, WARNING],
    ),
    case(
        "runtime_resource_for_fs_read",
        "@id(\"i\")\npermit (principal, action == Warrant::Action::\"fs.read\", resource == Warrant::Runtime::\"cli\");\n",
        Some(1),
        Some("i"),
        &[NO_ACTION, WARNING],
    ),
    case(
        "when_false",
        "@id(\"i\")\npermit (principal, action, resource)\nwhen { false };\n",
        Some(1),
        Some("i"),
        &[IMPOSSIBLE, WARNING],
    ),
    case(
        "conjunction_with_false",
        "@id(\"i\")\nforbid (principal, action, resource)\nwhen { principal.sizeBytes == 1 && false };\n",
        Some(1),
        Some("i"),
        &[IMPOSSIBLE, WARNING],
    ),
    // ---- Where: the ill-typed policy among good ones, and a bad file after a good one.
    case(
        "second_policy_ill_typed",
        "@id(\"ok\")\npermit (principal, action, resource);\n\n// The next one is wrong.\n@id(\"bad\")\npermit (principal, action, resource)\nwhen { principal.sizeBytes like \"1*\" };\n",
        Some(7),
        Some("bad"),
        &["for policy `bad`", "expected String but saw Long"],
    ),
    Case {
        name: "ill_typed_after_a_good_file",
        earlier: Some("@id(\"ok\")\npermit (principal, action, resource);\n"),
        text: "\n\n@id(\"bad\")\nforbid (principal, action, resource)\nwhen { principal.signer.kind == 1 };\n",
        line: Some(5),
        policy: Some("bad"),
        message: &["the types Long and String are not compatible"],
    },
    Case {
        name: "parse_error_after_a_good_file",
        earlier: Some("@id(\"ok\")\npermit (principal, action, resource);\n"),
        text: "@id(\"bad\")\npermit (principal, action, resource)\nwhen { 1 + };\n",
        line: Some(3),
        policy: None,
        message: &["unexpected token `}`"],
    },
];

fn load(case: &Case) -> Result<Policies, PolicyError> {
    let mut sources = Vec::new();
    if let Some(earlier) = case.earlier {
        sources.push((PathBuf::from("earlier.cedar"), earlier.to_owned()));
    }
    sources.push((PathBuf::from("case.cedar"), case.text.to_owned()));
    Policies::from_sources(&sources)
}

/// What is wrong with the first problem, if anything.
fn check(case: &Case, first: &Problem) -> Option<String> {
    let mut wrong = Vec::new();
    if first.file != Path::new("case.cedar") {
        wrong.push(format!("file {}", first.file.display()));
    }
    if first.line != case.line {
        wrong.push(format!("line {:?}, expected {:?}", first.line, case.line));
    }
    if first.policy.as_deref() != case.policy {
        wrong.push(format!(
            "policy {:?}, expected {:?}",
            first.policy, case.policy
        ));
    }
    for part in case.message {
        if !first.message.contains(part) {
            wrong.push(format!("message lacks {part:?}"));
        }
    }
    (!wrong.is_empty()).then(|| format!("{}; first problem: {first}", wrong.join(", ")))
}

#[test]
fn every_malformed_policy_is_refused_with_line_id_and_reason() {
    assert!(CASES.len() >= 30, "only {} cases", CASES.len());
    let mut names = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for case in CASES {
        assert!(names.insert(case.name), "two cases named {}", case.name);
        let outcome = match load(case) {
            Ok(policies) => Some(format!("accepted ({} policies)", policies.len())),
            Err(PolicyError::Invalid(problems)) => match problems.first() {
                None => Some("refused with no problems".to_owned()),
                Some(first) => check(case, first),
            },
            Err(other) => Some(format!("refused otherwise: {other}")),
        };
        if let Some(why) = outcome {
            failures.push(format!("  {}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
