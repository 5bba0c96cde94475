//! Temporary trees shaped like what pip 23 and setuptools 84 wrote for
//! `decnet==1.0.0` (a regular install) and for `pip install -e` of the v1.0.0
//! checkout (an editable one), trimmed to the files that matter here.

use super::*;

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

/// `python3 -m venv` of Python 3.11.7, with `bin/decnet`.
fn venv(install: &Path, name: &str) -> PathBuf {
    let venv = install.join(name);
    write(
        &venv.join("pyvenv.cfg"),
        "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.7\n\
         executable = /usr/bin/python3.11\ncommand = /usr/bin/python3 -m venv /opt/decnet/venv\n",
    );
    write(
        &venv.join("bin/decnet"),
        "#!/opt/decnet/venv/bin/python\nfrom decnet.cli import app\n",
    );
    fs::create_dir_all(venv.join("lib/python3.11/site-packages")).expect("mkdir");
    venv
}

fn regular(venv: &Path, python: &str) -> PathBuf {
    let site = venv.join(format!("lib/python{python}/site-packages"));
    write(&site.join("decnet/__init__.py"), "");
    write(&site.join("decnet/config.py"), "");
    write(&site.join("decnet-1.0.0.dist-info/INSTALLER"), "pip\n");
    site
}

/// What setuptools 84 writes for `pip install -e CHECKOUT`.
fn editable_finder(venv: &Path, checkout: &Path) -> PathBuf {
    let site = venv.join("lib/python3.11/site-packages");
    write(&checkout.join("decnet/__init__.py"), "");
    write(
        &site.join("__editable__.decnet-1.0.0.pth"),
        "import __editable___decnet_1_0_0_finder; __editable___decnet_1_0_0_finder.install()",
    );
    let package = checkout.join("decnet");
    let finder = site.join("__editable___decnet_1_0_0_finder.py");
    write(
        &finder,
        &format!(
            "from __future__ import annotations\nimport sys\n\n\
             MAPPING: dict[str, str] = {{'decnet': '{}'}}\n\
             NAMESPACES: dict[str, list[str]] = {{'decnet.web': ['{}/web']}}\nPATH_PLACEHOLDER = '__editable__.decnet-1.0.0.finder' + \".__path_hook__\"\n",
            package.display(),
            package.display()
        ),
    );
    write(
        &site.join("decnet-1.0.0.dist-info/direct_url.json"),
        &format!(
            "{{\"dir_info\": {{\"editable\": true}}, \"url\": \"file://{}\"}}",
            checkout.display()
        ),
    );
    finder
}

#[test]
fn the_install_dir_is_the_option_then_the_environment_then_opt_decnet() {
    assert_eq!(
        install_dir(Some(Path::new("/srv/d")), Some(OsStr::new("/e"))),
        (PathBuf::from("/srv/d"), InstallDirOrigin::Option)
    );
    assert_eq!(
        install_dir(None, Some(OsStr::new("/e"))),
        (PathBuf::from("/e"), InstallDirOrigin::Environment)
    );
    assert_eq!(
        install_dir(None, Some(OsStr::new(""))),
        (PathBuf::from("/opt/decnet"), InstallDirOrigin::Default)
    );
    let (relative, _) = install_dir(Some(Path::new("prefix/opt/decnet")), None);
    assert!(
        relative.is_absolute() && relative.ends_with("prefix/opt/decnet"),
        "{relative:?}"
    );
}

#[test]
fn a_regular_install_has_its_root_in_site_packages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let install = tmp.path().join("opt/decnet");
    let venv = venv(&install, "venv");
    let site = regular(&venv, "3.11");
    let found = find(&install).expect("found");
    assert_eq!(found.root, site);
    assert_eq!(found.kind, InstallKind::Regular);
    assert_eq!(found.venv, venv);
    assert_eq!(found.state_file(), site.join("decnet-state.json"));
    assert_eq!(found.sqlite_db(), site.join("decnet.db"));
}

#[test]
fn an_editable_install_has_its_root_in_the_checkout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let install = tmp.path().join("opt/decnet");
    let venv = venv(&install, "venv");
    // decnet init's own advice: the checkout is the install dir itself.
    let finder = editable_finder(&venv, &install);
    let found = find(&install).expect("found");
    assert_eq!(found.root, install);
    assert_eq!(found.kind, InstallKind::Editable { evidence: finder });
    assert_eq!(found.state_file(), install.join("decnet-state.json"));
    assert!(found.to_string().contains("editable install"), "{found}");
}

#[test]
fn a_plain_pth_line_names_the_checkout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let install = tmp.path().join("opt/decnet");
    let venv = venv(&install, ".venv");
    let checkout = tmp.path().join("src/DECNET");
    write(&checkout.join("decnet/__init__.py"), "");
    let site = venv.join("lib/python3.11/site-packages");
    write(
        &site.join("distutils-precedence.pth"),
        "import os; var = 'x'\n",
    );
    let pth = site.join("__editable__.decnet-1.0.0.pth");
    write(&pth, &format!("# comment\n{}\n", checkout.display()));
    let found = find(&install).expect("found");
    assert_eq!(found.root, checkout);
    assert_eq!(found.kind, InstallKind::Editable { evidence: pth });
}

#[test]
fn a_package_in_site_packages_wins_over_an_editable_finder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let install = tmp.path().join("opt/decnet");
    let venv = venv(&install, "venv");
    editable_finder(&venv, &tmp.path().join("checkout"));
    let site = regular(&venv, "3.11");
    assert_eq!(find(&install).expect("found").root, site);
}

#[test]
fn the_first_venv_with_bin_decnet_is_the_one_decnet_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let install = tmp.path().join("opt/decnet");
    // A venv without bin/decnet is skipped, as decnet init skips it.
    fs::create_dir_all(install.join("venv/lib/python3.11/site-packages")).expect("mkdir");
    let dot_venv = venv(&install, ".venv");
    let site = regular(&dot_venv, "3.11");
    let later = venv(&install, ".312");
    regular(&later, "3.11");
    assert_eq!(find(&install).expect("found").root, site);
}

#[test]
fn the_python_of_pyvenv_cfg_chooses_among_several() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let install = tmp.path().join("opt/decnet");
    let venv = venv(&install, "venv");
    regular(&venv, "3.11");
    let newer = regular(&venv, "3.12");
    write(
        &venv.join("pyvenv.cfg"),
        "home = /usr/bin\nversion_info = 3.12.3.final.0\n",
    );
    assert_eq!(find(&install).expect("found").root, newer);

    // Without a version, several that hold decnet are ambiguous.
    write(&venv.join("pyvenv.cfg"), "home = /usr/bin\n");
    let message = find(&install).expect_err("ambiguous").to_string();
    assert!(
        message.contains("several site-packages hold decnet"),
        "{message}"
    );
    assert!(message.contains("python3.11/site-packages, "), "{message}");

    // ...and one that does is the answer.
    fs::remove_dir_all(venv.join("lib/python3.11/site-packages/decnet")).expect("rm");
    fs::remove_dir_all(venv.join("lib/python3.11/site-packages/decnet-1.0.0.dist-info"))
        .expect("rm");
    assert_eq!(find(&install).expect("found").root, newer);
}

#[test]
fn nothing_found_lists_every_place_looked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nowhere");
    let message = find(&missing).expect_err("absent").to_string();
    assert!(
        message.starts_with(&format!(
            "found no DECNET installed under {}",
            missing.display()
        )),
        "{message}"
    );
    assert!(
        message.ends_with(&format!("; looked at: {}: absent", missing.display())),
        "{message}"
    );

    let install = tmp.path().join("opt/decnet");
    fs::create_dir_all(&install).expect("mkdir");
    let error = find(&install).expect_err("empty");
    let places: Vec<PathBuf> = error.looked.iter().map(|look| look.place.clone()).collect();
    assert_eq!(
        places,
        ["venv", ".venv", ".311", ".312", ".313"].map(|name| install.join(name).join("bin/decnet"))
    );

    // A venv with bin/decnet but no package: each way of finding it is listed.
    let venv = venv(&install, "venv");
    let site = venv.join("lib/python3.11/site-packages");
    let finder = site.join("__editable___decnet_1_0_0_finder.py");
    write(
        &finder,
        "MAPPING: dict[str, str] = {'decnet': '/gone/decnet'}\n",
    );
    let error = find(&install).expect_err("no package");
    let message = error.to_string();
    for expected in [
        format!("{}: absent", site.join("decnet/__init__.py").display()),
        format!(
            "{}: no line names a directory holding decnet/__init__.py",
            site.join("*.pth").display()
        ),
        format!(
            "{}: maps decnet to /gone/decnet, which holds no __init__.py",
            finder.display()
        ),
        format!(
            "{}: no editable finder maps decnet",
            site.join("__editable___*_finder.py").display()
        ),
    ] {
        assert!(message.contains(&expected), "{expected}\nnot in\n{message}");
    }
}

#[test]
fn finder_mappings_are_read_as_python_string_literals() {
    let line = r#"MAPPING: dict[str, str] = {'decnet_web': '/x', 'decnet': "/o'pt/dec\\net"}"#;
    assert_eq!(
        finder_mapping(line, "decnet").as_deref(),
        Some("/o'pt/dec\\net")
    );
    assert_eq!(finder_mapping(line, "decnet_web").as_deref(), Some("/x"));
    assert_eq!(finder_mapping(line, "other"), None);
    assert_eq!(
        finder_mapping("MAPPING = {'decnet': '/a\\x41'}", "decnet"),
        None
    );
}
