//! The libvirt XML of a Machine's domain and volume, and the ownership metadata read back from
//! a domain: pure.
//!
//! The domain boots from the network first, then its disk (per-device boot order); has ACPI
//! (without it a guest's power-off only halts, and an ACPI shutdown request is ignored); logs
//! its serial console to a file through virtlogd while `virsh console` still works (a pty with
//! `<log>`); has a virtio RNG (TCG guests starve for entropy); UEFI firmware is chosen by
//! libvirt's firmware autoselection (`firmware='efi'`, secure boot off).
//!
//! Ownership is in the domain's `<metadata>` (namespace, name and uid of the Machine): the
//! operator acts only on domains whose metadata names the Machine's uid.

use quick_xml::Writer;
use quick_xml::events::BytesText;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::vm::naming::hex;

/// XML namespace of the operator's domain metadata.
pub const METADATA_NAMESPACE: &str = "https://machinist.dev/xmlns/libvirt/v1alpha1";
/// Prefix of that namespace in the XML written.
pub const METADATA_PREFIX: &str = "machinist";

/// Everything a domain definition is made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DomainSpec {
    /// libvirt domain name ([`crate::vm::naming::domain_name`]).
    pub name: String,
    /// Domain UUID: the Machine's uid.
    pub uuid: String,
    /// The Machine that owns the domain.
    pub owner: Owner,
    /// `kvm` (hardware virtualisation) or `qemu` (TCG).
    pub kvm: bool,
    /// Memory, in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// UEFI (OVMF) firmware rather than BIOS.
    pub uefi: bool,
    /// The system disk.
    pub disk: DiskSpec,
    /// The network interface.
    pub nic: NicSpec,
    /// File the serial console is logged to.
    pub console_log: String,
}

/// The Machine a domain belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Machine namespace.
    pub namespace: String,
    /// Machine name.
    pub name: String,
    /// Machine uid.
    pub uid: String,
}

/// A domain's disk: a volume of a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiskSpec {
    /// Storage pool.
    pub pool: String,
    /// Volume name.
    pub volume: String,
    /// qcow2 (else raw).
    pub qcow2: bool,
}

/// A domain's network interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NicSpec {
    /// Where it attaches.
    pub source: NicSource,
    /// MAC address.
    pub mac: String,
}

/// What a network interface attaches to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum NicSource {
    /// A host bridge (`br0`).
    Bridge(String),
    /// A libvirt network (`default`).
    Network(String),
}

impl DomainSpec {
    /// A digest of the definition, kept in the metadata: a different digest means the domain
    /// must be defined again.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex(&Sha256::digest(&json)[..16])
    }
}

type Xml = Writer<Vec<u8>>;

fn text(w: &mut Xml, name: &str, value: &str) -> std::io::Result<()> {
    w.create_element(name).write_text_content(BytesText::new(value))?;
    Ok(())
}

/// The domain definition of `spec`, for `virDomainDefineXML`.
pub fn render_domain(spec: &DomainSpec) -> String {
    let mut w = Writer::new(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = write_domain(&mut w, spec);
    String::from_utf8(w.into_inner()).unwrap_or_default()
}

fn write_domain(w: &mut Xml, spec: &DomainSpec) -> std::io::Result<()> {
    let domain_type = if spec.kvm { "kvm" } else { "qemu" };
    w.create_element("domain").with_attribute(("type", domain_type)).write_inner_content(|w| {
        text(w, "name", &spec.name)?;
        text(w, "uuid", &spec.uuid)?;
        w.create_element("metadata").write_inner_content(|w| write_metadata(w, spec))?;
        w.create_element("memory")
            .with_attribute(("unit", "MiB"))
            .write_text_content(BytesText::new(&spec.memory_mib.to_string()))?;
        text(w, "vcpu", &spec.vcpus.to_string())?;
        let os = w.create_element("os");
        let os = if spec.uefi { os.with_attribute(("firmware", "efi")) } else { os };
        os.write_inner_content(|w| {
            let machine = if spec.uefi { "q35" } else { "pc" };
            w.create_element("type")
                .with_attribute(("arch", "x86_64"))
                .with_attribute(("machine", machine))
                .write_text_content(BytesText::new("hvm"))?;
            if spec.uefi {
                w.create_element("firmware").write_inner_content(|w| {
                    w.create_element("feature")
                        .with_attribute(("enabled", "no"))
                        .with_attribute(("name", "secure-boot"))
                        .write_empty()?;
                    Ok::<(), std::io::Error>(())
                })?;
            } else {
                // A failed network and disk boot retries after 5 s instead of stopping.
                w.create_element("bios")
                    .with_attribute(("useserial", "yes"))
                    .with_attribute(("rebootTimeout", "5000"))
                    .write_empty()?;
            }
            Ok::<(), std::io::Error>(())
        })?;
        w.create_element("features").write_inner_content(|w| {
            w.create_element("acpi").write_empty()?;
            w.create_element("apic").write_empty()?;
            Ok::<(), std::io::Error>(())
        })?;
        if spec.kvm {
            w.create_element("cpu").with_attribute(("mode", "host-passthrough")).write_empty()?;
        }
        text(w, "on_poweroff", "destroy")?;
        text(w, "on_reboot", "restart")?;
        text(w, "on_crash", "destroy")?;
        w.create_element("devices").write_inner_content(|w| write_devices(w, spec))?;
        Ok::<(), std::io::Error>(())
    })?;
    Ok(())
}

fn write_metadata(w: &mut Xml, spec: &DomainSpec) -> std::io::Result<()> {
    let p = METADATA_PREFIX;
    w.create_element(format!("{p}:machine"))
        .with_attribute((format!("xmlns:{p}").as_str(), METADATA_NAMESPACE))
        .write_inner_content(|w| {
            text(w, &format!("{p}:namespace"), &spec.owner.namespace)?;
            text(w, &format!("{p}:name"), &spec.owner.name)?;
            text(w, &format!("{p}:uid"), &spec.owner.uid)?;
            text(w, &format!("{p}:specHash"), &spec.hash())?;
            Ok::<(), std::io::Error>(())
        })?;
    Ok(())
}

fn write_devices(w: &mut Xml, spec: &DomainSpec) -> std::io::Result<()> {
    let format = if spec.disk.qcow2 { "qcow2" } else { "raw" };
    w.create_element("disk")
        .with_attribute(("type", "volume"))
        .with_attribute(("device", "disk"))
        .write_inner_content(|w| {
            w.create_element("driver")
                .with_attribute(("name", "qemu"))
                .with_attribute(("type", format))
                .with_attribute(("discard", "unmap"))
                .write_empty()?;
            w.create_element("source")
                .with_attribute(("pool", spec.disk.pool.as_str()))
                .with_attribute(("volume", spec.disk.volume.as_str()))
                .write_empty()?;
            w.create_element("target")
                .with_attribute(("dev", "vda"))
                .with_attribute(("bus", "virtio"))
                .write_empty()?;
            w.create_element("boot").with_attribute(("order", "2")).write_empty()?;
            Ok::<(), std::io::Error>(())
        })?;
    let (kind, attribute, source) = match &spec.nic.source {
        NicSource::Bridge(bridge) => ("bridge", "bridge", bridge.as_str()),
        NicSource::Network(network) => ("network", "network", network.as_str()),
    };
    w.create_element("interface").with_attribute(("type", kind)).write_inner_content(|w| {
        w.create_element("source").with_attribute((attribute, source)).write_empty()?;
        w.create_element("mac").with_attribute(("address", spec.nic.mac.as_str())).write_empty()?;
        w.create_element("model").with_attribute(("type", "virtio")).write_empty()?;
        w.create_element("boot").with_attribute(("order", "1")).write_empty()?;
        Ok::<(), std::io::Error>(())
    })?;
    w.create_element("serial").with_attribute(("type", "pty")).write_inner_content(|w| {
        w.create_element("log")
            .with_attribute(("file", spec.console_log.as_str()))
            .with_attribute(("append", "on"))
            .write_empty()?;
        w.create_element("target").with_attribute(("port", "0")).write_empty()?;
        Ok::<(), std::io::Error>(())
    })?;
    w.create_element("console").with_attribute(("type", "pty")).write_inner_content(|w| {
        w.create_element("target").with_attribute(("type", "serial")).with_attribute(("port", "0")).write_empty()?;
        Ok::<(), std::io::Error>(())
    })?;
    w.create_element("rng").with_attribute(("model", "virtio")).write_inner_content(|w| {
        w.create_element("backend")
            .with_attribute(("model", "random"))
            .write_text_content(BytesText::new("/dev/urandom"))?;
        Ok::<(), std::io::Error>(())
    })?;
    Ok(())
}

/// A volume to create in a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Volume name.
    pub name: String,
    /// Size, in GiB.
    pub capacity_gib: u64,
    /// qcow2 (else raw).
    pub qcow2: bool,
}

/// The volume definition of `spec`, for `virStorageVolCreateXML`. Allocation 0 keeps a raw
/// file sparse.
pub fn render_volume(spec: &VolumeSpec) -> String {
    let mut w = Writer::new(Vec::new());
    let bytes = spec.capacity_gib.saturating_mul(1 << 30);
    let _ = w.create_element("volume").write_inner_content(|w| {
        text(w, "name", &spec.name)?;
        w.create_element("capacity")
            .with_attribute(("unit", "bytes"))
            .write_text_content(BytesText::new(&bytes.to_string()))?;
        w.create_element("allocation").with_attribute(("unit", "bytes")).write_text_content(BytesText::new("0"))?;
        w.create_element("target").write_inner_content(|w| {
            let format = if spec.qcow2 { "qcow2" } else { "raw" };
            w.create_element("format").with_attribute(("type", format)).write_empty()?;
            Ok::<(), std::io::Error>(())
        })?;
        Ok::<(), std::io::Error>(())
    });
    String::from_utf8(w.into_inner()).unwrap_or_default()
}

/// What a domain's metadata says of its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// Machine namespace.
    pub namespace: String,
    /// Machine name.
    pub name: String,
    /// Machine uid.
    pub uid: String,
    /// [`DomainSpec::hash`] of the definition.
    pub spec_hash: String,
}

/// Reads the ownership element of a whole domain definition (`virsh dumpxml`). `None`: not
/// ours, or not readable.
pub fn parse_ownership(xml: &str) -> Option<Ownership> {
    read_ownership(xml, false)
}

/// Reads the ownership element as `virDomainGetMetadata` returns it for our namespace: libvirt
/// has already picked it by namespace, and gives it back without one.
pub fn parse_metadata_element(xml: &str) -> Option<Ownership> {
    read_ownership(xml, true)
}

fn read_ownership(xml: &str, unqualified: bool) -> Option<Ownership> {
    let document = roxmltree::Document::parse(xml).ok()?;
    let ours = |node: &roxmltree::Node<'_, '_>, name: &str| {
        node.tag_name().name() == name
            && match node.tag_name().namespace() {
                Some(namespace) => namespace == METADATA_NAMESPACE,
                None => unqualified,
            }
    };
    let machine = document.descendants().find(|n| ours(n, "machine"))?;
    let child =
        |name: &str| machine.children().find(|n| ours(n, name)).and_then(|n| n.text()).map(|t| t.trim().to_owned());
    Some(Ownership {
        namespace: child("namespace")?,
        name: child("name")?,
        uid: child("uid")?,
        spec_hash: child("specHash").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An XML tree with attributes sorted and text trimmed, to compare documents, not strings.
    #[derive(Debug, PartialEq)]
    struct Tree {
        name: String,
        attributes: Vec<(String, String)>,
        text: String,
        children: Vec<Tree>,
    }

    fn tree(xml: &str) -> Tree {
        let document = roxmltree::Document::parse(xml).unwrap();
        convert(document.root_element())
    }

    fn convert(node: roxmltree::Node<'_, '_>) -> Tree {
        let mut attributes: Vec<(String, String)> =
            node.attributes().map(|a| (a.name().to_owned(), a.value().to_owned())).collect();
        attributes.sort();
        let text = node.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect::<String>();
        Tree {
            name: node.tag_name().name().to_owned(),
            attributes,
            text: text.trim().to_owned(),
            children: node.children().filter(roxmltree::Node::is_element).map(convert).collect(),
        }
    }

    fn spec() -> DomainSpec {
        DomainSpec {
            name: "api_api-01".into(),
            uuid: "4b3c9d52-1111-4222-8333-444455556666".into(),
            owner: Owner {
                namespace: "api".into(),
                name: "api-01".into(),
                uid: "4b3c9d52-1111-4222-8333-444455556666".into(),
            },
            kvm: false,
            memory_mib: 2048,
            vcpus: 2,
            uefi: false,
            disk: DiskSpec { pool: "ssd".into(), volume: "api_api-01.img".into(), qcow2: false },
            nic: NicSpec { source: NicSource::Bridge("br-lan".into()), mac: "52:54:00:0a:01:01".into() },
            console_log: "/var/log/libvirt/qemu/api_api-01-serial.log".into(),
        }
    }

    #[test]
    fn a_bios_tcg_domain_on_a_bridge() {
        let spec = spec();
        let expected = format!(
            r#"<domain type="qemu">
              <name>api_api-01</name>
              <uuid>4b3c9d52-1111-4222-8333-444455556666</uuid>
              <metadata>
                <machinist:machine xmlns:machinist="https://machinist.dev/xmlns/libvirt/v1alpha1">
                  <machinist:namespace>api</machinist:namespace>
                  <machinist:name>api-01</machinist:name>
                  <machinist:uid>4b3c9d52-1111-4222-8333-444455556666</machinist:uid>
                  <machinist:specHash>{hash}</machinist:specHash>
                </machinist:machine>
              </metadata>
              <memory unit="MiB">2048</memory>
              <vcpu>2</vcpu>
              <os><type arch="x86_64" machine="pc">hvm</type><bios useserial="yes" rebootTimeout="5000"/></os>
              <features><acpi/><apic/></features>
              <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
              <devices>
                <disk type="volume" device="disk">
                  <driver name="qemu" type="raw" discard="unmap"/>
                  <source pool="ssd" volume="api_api-01.img"/>
                  <target dev="vda" bus="virtio"/>
                  <boot order="2"/>
                </disk>
                <interface type="bridge">
                  <source bridge="br-lan"/><mac address="52:54:00:0a:01:01"/><model type="virtio"/><boot order="1"/>
                </interface>
                <serial type="pty"><log file="/var/log/libvirt/qemu/api_api-01-serial.log" append="on"/><target port="0"/></serial>
                <console type="pty"><target type="serial" port="0"/></console>
                <rng model="virtio"><backend model="random">/dev/urandom</backend></rng>
              </devices>
            </domain>"#,
            hash = spec.hash()
        );
        assert_eq!(tree(&render_domain(&spec)), tree(&expected));
    }

    #[test]
    fn uefi_kvm_on_a_network_with_qcow2() {
        let mut spec = spec();
        spec.uefi = true;
        spec.kvm = true;
        spec.disk.qcow2 = true;
        spec.nic.source = NicSource::Network("default".into());
        let rendered = tree(&render_domain(&spec));
        assert_eq!(rendered.attributes, [("type".to_owned(), "kvm".to_owned())]);
        let child = |t: &Tree, name: &str| t.children.iter().find(|c| c.name == name).map(|c| c.attributes.clone());
        let os = rendered.children.iter().find(|c| c.name == "os").unwrap();
        assert_eq!(os.attributes, [("firmware".to_owned(), "efi".to_owned())]);
        assert_eq!(child(os, "type").unwrap()[1], ("machine".to_owned(), "q35".to_owned()));
        assert!(child(os, "bios").is_none());
        assert_eq!(child(&rendered, "cpu").unwrap(), [("mode".to_owned(), "host-passthrough".to_owned())]);
        let devices = rendered.children.iter().find(|c| c.name == "devices").unwrap();
        let disk = devices.children.iter().find(|c| c.name == "disk").unwrap();
        assert!(child(disk, "driver").unwrap().contains(&("type".to_owned(), "qcow2".to_owned())));
        let nic = devices.children.iter().find(|c| c.name == "interface").unwrap();
        assert_eq!(nic.attributes, [("type".to_owned(), "network".to_owned())]);
        assert_eq!(child(nic, "source").unwrap(), [("network".to_owned(), "default".to_owned())]);
    }

    #[test]
    fn text_and_attributes_are_escaped() {
        let mut spec = spec();
        spec.owner.name = "a<b>&\"c'".into();
        spec.console_log = "/logs/<x>&\".log".into();
        let xml = render_domain(&spec);
        let ownership = parse_ownership(&xml).unwrap();
        assert_eq!(ownership.name, "a<b>&\"c'");
        let rendered = tree(&xml);
        let devices = rendered.children.iter().find(|c| c.name == "devices").unwrap();
        let serial = devices.children.iter().find(|c| c.name == "serial").unwrap();
        assert_eq!(serial.children[0].attributes[0], ("append".to_owned(), "on".to_owned()));
        assert_eq!(serial.children[0].attributes[1], ("file".to_owned(), "/logs/<x>&\".log".to_owned()));
    }

    #[test]
    fn ownership_round_trips_and_the_hash_follows_the_spec() {
        let spec = spec();
        let ownership = parse_ownership(&render_domain(&spec)).unwrap();
        assert_eq!(
            ownership,
            Ownership {
                namespace: "api".into(),
                name: "api-01".into(),
                uid: spec.owner.uid.clone(),
                spec_hash: spec.hash()
            }
        );
        let mut bigger = spec.clone();
        bigger.memory_mib = 4096;
        assert_ne!(bigger.hash(), spec.hash());
        // Any prefix of our namespace.
        let prefixed = format!(
            r#"<m:machine xmlns:m="{METADATA_NAMESPACE}"><m:namespace>api</m:namespace><m:name>api-01</m:name><m:uid>u1</m:uid></m:machine>"#
        );
        assert_eq!(parse_ownership(&prefixed).map(|o| o.uid), Some("u1".into()));
        // In a whole definition, another namespace or none is not ours.
        let bare = "<machine><namespace>api</namespace><name>api-01</name><uid>u1</uid></machine>";
        assert_eq!(parse_ownership(bare), None);
        let other = bare.replace("<machine>", r#"<machine xmlns="https://example.org/x">"#);
        assert_eq!(parse_ownership(&other), None);
        assert_eq!(parse_ownership("not xml"), None);
        // As libvirt's metadata call returns it (already chosen by namespace, given without one).
        assert_eq!(parse_metadata_element(bare).map(|o| o.uid), Some("u1".into()));
        assert_eq!(parse_metadata_element(&other), None);
        assert_eq!(parse_metadata_element("<machine><uid>u1</uid></machine>"), None, "incomplete");
    }

    #[test]
    fn volumes_are_sparse_in_the_format_asked() {
        let xml = render_volume(&VolumeSpec { name: "api_api-01.qcow2".into(), capacity_gib: 20, qcow2: true });
        let expected = r#"<volume><name>api_api-01.qcow2</name>
            <capacity unit="bytes">21474836480</capacity><allocation unit="bytes">0</allocation>
            <target><format type="qcow2"/></target></volume>"#;
        assert_eq!(tree(&xml), tree(expected));
    }
}
