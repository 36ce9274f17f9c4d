//! The policy the benchmarks judge calls by: 20 CEL rules in tool-policy.

/// A tool-policy manifest with 20 CEL rules of the kinds a team writes: by
/// group, by email, by tool name and by argument; none refuses `echo` for the
/// benchmark's caller, so no rule stops the call early.
pub fn twenty_rules() -> String {
    let mut text = String::from("order = 10\nfailure = \"closed\"\n\n[config]\nallow = []\n");
    let mut rule = |name: String, when: String, action: &str| {
        text.push_str(&format!("\n[[config.rules]]\nname = {name:?}\nwhen = {when:?}\naction = \"{action}\"\n"));
    };
    for i in 0..8 {
        rule(
            format!("only-admins-delete-{i}"),
            format!("tool.name == \"delete_{i}\" && !(\"admin\" in caller.claims.groups)"),
            "deny",
        );
    }
    for i in 0..6 {
        rule(
            format!("no-system-paths-{i}"),
            format!("has(arguments.path) && arguments.path.startsWith(\"/etc/{i}\")"),
            "deny",
        );
    }
    rule("no-guests".into(), "caller.claims.groups.exists(g, g == \"guest\")".into(), "deny");
    rule("company-mail".into(), "!caller.claims.email.endsWith(\"@example.com\")".into(), "deny");
    rule("prod-needs-approval".into(), "tool.name.startsWith(\"deploy_prod\")".into(), "approve");
    rule("infra-tools".into(), "\"infra\" in caller.claims.groups && tool.name.startsWith(\"infra_\")".into(), "allow");
    rule(
        "dev-tools".into(),
        "\"dev\" in caller.claims.groups && tool.name in [\"echo\", \"add\", \"big\"]".into(),
        "allow",
    );
    rule("short-texts".into(), "has(arguments.text) && size(arguments.text) < 100000".into(), "allow");
    text
}
