//! Private keys in the PEM forms kubeadm writes (`keyutil.MarshalPrivateKeyToPEM`): RSA
//! keys as PKCS#1 (`RSA PRIVATE KEY`), ECDSA keys as SEC1 (`EC PRIVATE KEY`, with the
//! curve named inside, as Go's `x509.MarshalECPrivateKey` writes it). rcgen produces
//! PKCS#8; this unwraps it. Reading accepts all three forms (rcgen with aws-lc-rs does).

/// The PEM kubeadm would write for the PKCS#8 key `pkcs8`.
pub fn kubeadm_key_pem(pkcs8: &[u8]) -> Result<String, String> {
    let (label, der) = unwrap_pkcs8(pkcs8)?;
    Ok(pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// One DER element: tag, the whole element's bytes, and its contents.
struct Tlv<'a> {
    tag: u8,
    raw: &'a [u8],
    content: &'a [u8],
}

fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let bad = || "truncated DER".to_string();
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("unsupported DER length".into());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad());
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        raw: &input[..header + len],
        content: &rest[..len],
    };
    Ok((tlv, &rest[len..]))
}

fn children(content: &[u8]) -> Result<Vec<Tlv<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (tlv, next) = read_tlv(rest)?;
        out.push(tlv);
        rest = next;
    }
    Ok(out)
}

fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, privateKey OCTET STRING, ... }
fn unwrap_pkcs8(pkcs8: &[u8]) -> Result<(&'static str, Vec<u8>), String> {
    let (outer, _) = read_tlv(pkcs8)?;
    let fields = children(outer.content)?;
    let [_, algorithm, private_key, ..] = fields.as_slice() else {
        return Err("not a PKCS#8 private key".into());
    };
    let algorithm = children(algorithm.content)?;
    let oid = algorithm.first().ok_or("no key algorithm")?;
    if oid.content == OID_RSA_ENCRYPTION {
        return Ok(("RSA PRIVATE KEY", private_key.content.to_vec()));
    }
    if oid.content != OID_EC_PUBLIC_KEY {
        return Err("neither an RSA nor an ECDSA key".into());
    }
    let curve = algorithm.get(1).ok_or("an ECDSA key without its curve")?;
    // ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters OPTIONAL,
    //                             [1] publicKey OPTIONAL }: Go needs [0] to read it back.
    let (ec, _) = read_tlv(private_key.content)?;
    let ec_fields = children(ec.content)?;
    let mut content = Vec::new();
    for field in ec_fields.iter().filter(|f| f.tag != 0xa0 && f.tag != 0xa1) {
        content.extend_from_slice(field.raw);
    }
    content.extend(encode(0xa0, curve.raw));
    if let Some(public) = ec_fields.iter().find(|f| f.tag == 0xa1) {
        content.extend_from_slice(public.raw);
    }
    Ok(("EC PRIVATE KEY", encode(0x30, &content)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncryptionAlgorithm;

    #[test]
    fn keys_are_written_in_kubeadm_forms_and_read_back() {
        for (algorithm, label) in [
            (EncryptionAlgorithm::Rsa2048, "RSA PRIVATE KEY"),
            (EncryptionAlgorithm::EcdsaP256, "EC PRIVATE KEY"),
            (EncryptionAlgorithm::EcdsaP384, "EC PRIVATE KEY"),
        ] {
            let key = crate::pki::generate_key(algorithm).unwrap();
            let text = kubeadm_key_pem(&key.serialize_der()).unwrap();
            let parsed = pem::parse(&text).unwrap();
            assert_eq!(parsed.tag(), label, "{algorithm}");
            assert!(text.starts_with(&format!("-----BEGIN {label}-----\n")));
            let back = rcgen::KeyPair::from_pem(&text).unwrap();
            assert_eq!(back.public_key_pem(), key.public_key_pem(), "{algorithm}");
        }
    }

    #[test]
    fn ec_keys_name_their_curve_as_go_writes_them() {
        let key = crate::pki::generate_key(EncryptionAlgorithm::EcdsaP256).unwrap();
        let text = kubeadm_key_pem(&key.serialize_der()).unwrap();
        let der = pem::parse(&text).unwrap().into_contents();
        let (seq, _) = read_tlv(&der).unwrap();
        let fields = children(seq.content).unwrap();
        let tags: Vec<u8> = fields.iter().map(|f| f.tag).collect();
        assert_eq!(tags, [0x02, 0x04, 0xa0, 0xa1]);
        // prime256v1
        let (oid, _) = read_tlv(fields[2].content).unwrap();
        assert_eq!(
            oid.content,
            [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
        );
    }
}
