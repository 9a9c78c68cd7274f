//! `Union`: nested mounts, merged listings, cross-mount links and renames, policies.

// Helpers outside `#[test]` functions panic on purpose too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::p;
use proptest::prelude::*;
use vfs_overlay::{
    FileSystem, FileType, MemFs, MountOutcome, MountPolicy, Union, VfsError, VfsPath,
};

fn mem(files: &[(&str, &str)]) -> Arc<MemFs> {
    let fs = MemFs::new();
    for (path, content) in files {
        let path = p(path);
        fs.create_dir_all(&path.parent().unwrap()).unwrap();
        fs.write_file(&path, Bytes::copy_from_slice(content.as_bytes()))
            .unwrap();
    }
    Arc::new(fs)
}

fn names(u: &Union, dir: &str) -> Vec<(String, FileType)> {
    u.read_dir(&p(dir))
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect()
}

/// `/` = rootfs, `/opt` = app, `/opt/assets` = assets.
fn nested() -> Union {
    let u = Union::new();
    u.mount(
        &p("/"),
        mem(&[("/etc/conf", "root-conf"), ("/opt/readme", "hidden")]),
        MountPolicy::Fail,
    )
    .unwrap();
    u.mount(
        &p("/opt"),
        mem(&[("/bin/app", "app"), ("/assets/old", "shadowed")]),
        MountPolicy::Fail,
    )
    .unwrap();
    u.mount(
        &p("/opt/assets"),
        mem(&[("/img.png", "png")]),
        MountPolicy::Fail,
    )
    .unwrap();
    u
}

#[test]
fn deepest_mount_wins() {
    let u = nested();
    assert_eq!(u.read_all(&p("/etc/conf")).unwrap(), "root-conf");
    assert_eq!(u.read_all(&p("/opt/bin/app")).unwrap(), "app");
    assert_eq!(u.read_all(&p("/opt/assets/img.png")).unwrap(), "png");
    // The root filesystem's /opt and the app's /assets are hidden by the mounts above them.
    assert_eq!(
        u.read_all(&p("/opt/readme")),
        Err(VfsError::NotFound(p("/opt/readme")))
    );
    assert_eq!(
        u.read_all(&p("/opt/assets/old")),
        Err(VfsError::NotFound(p("/opt/assets/old")))
    );
    assert_eq!(
        u.mount_point_of(&p("/opt/assets/x/y")),
        Some(p("/opt/assets"))
    );
    assert_eq!(u.mount_point_of(&p("/opt/assetsx")), Some(p("/opt")));
    assert_eq!(u.mounts(), [p("/"), p("/opt"), p("/opt/assets")]);
}

#[test]
fn listings_merge_mount_points() {
    let u = Union::new();
    u.mount(
        &p("/"),
        mem(&[("/etc/conf", ""), ("/usr/x", "")]),
        MountPolicy::Fail,
    )
    .unwrap();
    // /opt does not exist in the root filesystem, /usr/x is a file there: both show as dirs.
    u.mount(&p("/opt/pkg/v1"), mem(&[("/f", "1")]), MountPolicy::Fail)
        .unwrap();
    u.mount(&p("/usr/x/sub"), mem(&[]), MountPolicy::Fail)
        .unwrap();
    assert_eq!(
        names(&u, "/"),
        [
            ("etc".into(), FileType::Dir),
            ("opt".into(), FileType::Dir),
            ("usr".into(), FileType::Dir)
        ]
    );
    assert_eq!(names(&u, "/opt"), [("pkg".into(), FileType::Dir)]);
    assert_eq!(names(&u, "/opt/pkg/v1"), [("f".into(), FileType::File)]);
    assert_eq!(names(&u, "/usr"), [("x".into(), FileType::Dir)]);
    assert_eq!(names(&u, "/usr/x"), [("sub".into(), FileType::Dir)]);
    assert_eq!(u.metadata(&p("/opt/pkg")).unwrap().kind, FileType::Dir);
    assert_eq!(u.metadata(&p("/usr/x")).unwrap().kind, FileType::Dir);
    assert_eq!(
        u.read_all(&p("/usr/x")),
        Err(VfsError::IsADirectory(p("/usr/x")))
    );
}

#[test]
fn empty_union_and_no_root_mount() {
    let u = Union::new();
    assert_eq!(u.read_dir(&p("/")).unwrap(), []);
    assert_eq!(u.metadata(&p("/x")), Err(VfsError::NotFound(p("/x"))));
    u.mount(&p("/a/b"), mem(&[("/f", "f")]), MountPolicy::Fail)
        .unwrap();
    assert_eq!(names(&u, "/"), [("a".into(), FileType::Dir)]);
    // Synthetic directories cannot be written.
    assert_eq!(
        u.write_file(&p("/new"), Bytes::new()),
        Err(VfsError::ReadOnly(p("/new")))
    );
    assert_eq!(
        u.set_mode(&p("/a"), 0o700),
        Err(VfsError::ReadOnly(p("/a")))
    );
    assert_eq!(u.remove(&p("/a")), Err(VfsError::Busy(p("/a"))));
    assert_eq!(
        u.create_dir(&p("/a")),
        Err(VfsError::AlreadyExists(p("/a")))
    );
}

#[test]
fn writes_go_to_the_serving_mount_and_errors_name_union_paths() {
    let app = mem(&[]);
    let u = nested();
    u.mount(&p("/opt"), app.clone(), MountPolicy::Replace)
        .unwrap();
    u.create_dir_all(&p("/opt/bin")).unwrap();
    u.write_file(&p("/opt/bin/tool"), Bytes::from_static(b"t"))
        .unwrap();
    assert_eq!(app.read_all(&p("/bin/tool")).unwrap(), "t");
    assert_eq!(
        u.read_dir(&p("/opt/nope")),
        Err(VfsError::NotFound(p("/opt/nope")))
    );
    assert_eq!(
        u.create_dir(&p("/opt/a/b")),
        Err(VfsError::NotFound(p("/opt/a")))
    );
    assert_eq!(u.remove(&p("/opt")), Err(VfsError::Busy(p("/opt"))));
    assert_eq!(
        u.remove_dir_all(&p("/opt/assets")),
        Err(VfsError::Busy(p("/opt/assets")))
    );
    u.set_mode(&p("/opt"), 0o700).unwrap();
    assert_eq!(app.metadata(&p("/")).unwrap().mode, 0o700);
}

#[test]
fn rename_across_mounts_is_cross_device() {
    let u = nested();
    let err = u.rename(&p("/etc/conf"), &p("/opt/conf")).unwrap_err();
    assert_eq!(
        err,
        VfsError::CrossDevice {
            from: p("/etc/conf"),
            to: p("/opt/conf")
        }
    );
    assert!(err.to_string().contains("different mounts"));
    assert!(matches!(
        u.hard_link(&p("/opt/bin/app"), &p("/opt/assets/app")),
        Err(VfsError::CrossDevice { .. })
    ));
    // Within one mount it works, and nothing was copied by the failed attempt.
    u.rename(&p("/opt/bin/app"), &p("/opt/app")).unwrap();
    assert_eq!(u.read_all(&p("/opt/app")).unwrap(), "app");
    assert_eq!(u.read_all(&p("/etc/conf")).unwrap(), "root-conf");
    assert_eq!(
        u.rename(&p("/opt/assets"), &p("/opt/x")),
        Err(VfsError::Busy(p("/opt/assets")))
    );
}

#[test]
fn symlinks_resolve_across_mounts_inside_the_union_root() {
    let u = nested();
    let app = mem(&[]);
    app.create_dir(&p("/lib")).unwrap();
    // Absolute: from the union root, not the mount's.
    app.symlink("/etc/conf", &p("/lib/abs")).unwrap();
    // Relative, climbing out of the mount and past the root.
    app.symlink("../../../../../../etc/conf", &p("/lib/rel"))
        .unwrap();
    // Into a nested mount.
    app.symlink("../assets", &p("/lib/assets")).unwrap();
    u.mount(&p("/opt"), app, MountPolicy::Replace).unwrap();
    assert_eq!(u.read_all(&p("/opt/lib/abs")).unwrap(), "root-conf");
    assert_eq!(u.read_all(&p("/opt/lib/rel")).unwrap(), "root-conf");
    assert_eq!(u.canonicalize(&p("/opt/lib/rel")).unwrap(), p("/etc/conf"));
    assert_eq!(u.read_all(&p("/opt/lib/assets/img.png")).unwrap(), "png");
    assert_eq!(u.read_link(&p("/opt/lib/abs")).unwrap(), "/etc/conf");
    assert_eq!(
        u.read_link(&p("/opt")),
        Err(VfsError::NotASymlink(p("/opt")))
    );
}

#[test]
fn mount_policies() {
    let u = Union::new();
    let first = mem(&[("/which", "first")]);
    let second = mem(&[("/which", "second")]);
    assert!(matches!(
        u.mount(&p("/m"), first, MountPolicy::Fail),
        Ok(MountOutcome::Mounted)
    ));
    assert_eq!(
        u.mount(&p("/m"), second.clone(), MountPolicy::Fail)
            .unwrap_err(),
        VfsError::AlreadyMounted(p("/m"))
    );
    assert!(matches!(
        u.mount(&p("/m"), second.clone(), MountPolicy::KeepExisting),
        Ok(MountOutcome::KeptExisting)
    ));
    assert_eq!(u.read_all(&p("/m/which")).unwrap(), "first");
    let Ok(MountOutcome::Replaced(old)) = u.mount(&p("/m"), second, MountPolicy::Replace) else {
        panic!("expected a replacement");
    };
    assert_eq!(old.read_all(&p("/which")).unwrap(), "first");
    assert_eq!(u.read_all(&p("/m/which")).unwrap(), "second");
}

#[test]
fn unmount_prunes_and_keeps_nested() {
    let u = nested();
    assert!(u.unmount(&p("/opt")).is_some());
    assert!(u.unmount(&p("/opt")).is_none());
    // /opt/assets is still reachable through a synthetic /opt over the root fs's /opt.
    assert_eq!(u.read_all(&p("/opt/assets/img.png")).unwrap(), "png");
    assert_eq!(u.read_all(&p("/opt/readme")).unwrap(), "hidden");
    u.unmount(&p("/opt/assets")).unwrap();
    assert_eq!(u.mounts(), [p("/")]);
    assert_eq!(names(&u, "/opt"), [("readme".into(), FileType::File)]);
}

#[test]
fn union_is_object_safe_and_nestable() {
    let inner = Union::new();
    inner
        .mount(&p("/x"), mem(&[("/f", "inner")]), MountPolicy::Fail)
        .unwrap();
    let outer = Union::new();
    let inner: Arc<dyn FileSystem> = Arc::new(inner);
    outer
        .mount(&p("/deep/er"), inner, MountPolicy::Fail)
        .unwrap();
    assert_eq!(outer.read_all(&p("/deep/er/x/f")).unwrap(), "inner");
}

fn mount_path() -> impl Strategy<Value = VfsPath> {
    prop::collection::vec("[ab]{1,2}", 0..4).prop_map(|parts| p(&parts.join("/")))
}

proptest! {
    #[test]
    fn mount_resolution_is_deepest_prefix(
        mounts in prop::collection::vec(mount_path(), 0..6),
        query in mount_path(),
    ) {
        let u = Union::new();
        for (i, m) in mounts.iter().enumerate() {
            u.mount(m, mem(&[("/id", &i.to_string())]), MountPolicy::Replace).unwrap();
        }
        let expected = mounts
            .iter()
            .filter(|m| query.starts_with(m))
            .max_by_key(|m| m.components().count())
            .cloned();
        prop_assert_eq!(u.mount_point_of(&query), expected.clone());
        // And reads are served by that mount: the last mount at that path (Replace) wins.
        if let Some(mp) = expected {
            let last = mounts.iter().rposition(|m| *m == mp).unwrap();
            let id_path = mp.join("id").unwrap();
            // `id` may itself be a mount point deeper down; only check when it is not.
            if !mounts.iter().any(|m| m.starts_with(&id_path)) {
                prop_assert_eq!(u.read_all(&id_path).unwrap(), last.to_string());
            }
        }
    }
}

#[test]
fn sub_path_mounts() {
    use vfs_overlay::SubFs;
    let volume = mem(&[
        ("/share/data/a.txt", "a"),
        ("/share/data/sub/b", "b"),
        ("/secret", "s"),
    ]);
    volume.symlink("share", &p("/s")).unwrap();
    volume.symlink("/etc/conf", &p("/share/data/abs")).unwrap();
    volume
        .symlink("../../../secret", &p("/share/data/up"))
        .unwrap();
    let sub = SubFs::new(volume.clone(), &p("/s/data")).unwrap();
    assert_eq!(sub.base(), &p("/share/data"));
    let u = nested();
    u.mount(&p("/data"), Arc::new(sub), MountPolicy::Fail)
        .unwrap();
    assert_eq!(names(&u, "/data").len(), 4);
    assert_eq!(u.read_all(&p("/data/sub/b")).unwrap(), "b");
    // Links inside the sub-path resolve in the union, never back into the volume's root.
    assert_eq!(u.read_all(&p("/data/abs")).unwrap(), "root-conf");
    assert_eq!(
        u.read_all(&p("/data/up")),
        Err(VfsError::NotFound(p("/secret")))
    );
    // Errors name union paths; writes land in the volume.
    assert_eq!(
        u.read_all(&p("/data/nope")),
        Err(VfsError::NotFound(p("/data/nope")))
    );
    u.write_file(&p("/data/new"), Bytes::from_static(b"n"))
        .unwrap();
    assert_eq!(volume.read_all(&p("/share/data/new")).unwrap(), "n");
    assert!(matches!(
        SubFs::new(volume.clone(), &p("/secret")),
        Err(VfsError::NotADirectory(_))
    ));
    assert!(matches!(
        SubFs::new(volume, &p("/missing")),
        Err(VfsError::NotFound(_))
    ));
}

#[test]
fn public_types_are_send_sync_and_object_safe() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Union>();
    send_sync::<MemFs>();
    send_sync::<vfs_overlay::Overlay>();
    send_sync::<vfs_overlay::SubFs>();
    send_sync::<VfsError>();
    let _: Vec<Arc<dyn FileSystem>> = vec![Arc::new(MemFs::new()), Arc::new(Union::new())];
}

proptest! {
    #[test]
    fn listings_show_every_mount_point_as_a_directory(
        mounts in prop::collection::vec(mount_path(), 1..6),
    ) {
        let u = Union::new();
        // The root filesystem has a file where some mount points may go.
        u.mount(&VfsPath::root(), mem(&[("/a", "file"), ("/b/a", "file")]), MountPolicy::Replace)
            .unwrap();
        for m in &mounts {
            u.mount(m, mem(&[]), MountPolicy::Replace).unwrap();
        }
        for m in mounts.iter().filter(|m| !m.is_root()) {
            let parent = m.parent().unwrap();
            let name = m.file_name().unwrap();
            let listing = u.read_dir(&parent).unwrap();
            prop_assert!(
                listing.iter().any(|e| e.name == name && e.kind == FileType::Dir),
                "{} missing from listing of {}", m, parent
            );
            prop_assert!(u.metadata(m).unwrap().is_dir());
            let mut sorted = listing.clone();
            sorted.sort();
            prop_assert_eq!(listing, sorted);
        }
    }
}
