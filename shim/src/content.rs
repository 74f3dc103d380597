//! containerd's API: a container's image record, and blobs read from the content store by
//! digest. Everything read here is untrusted; [`broker::Node::admit`] hashes each blob.

use containerd_client::services::v1::{
    GetContainerRequest, GetImageRequest, ReadContentRequest, containers_client::ContainersClient,
    content_client::ContentClient, images_client::ImagesClient,
};
use containerd_client::tonic::Request;
use containerd_client::tonic::transport::Channel;
use containerd_client::with_namespace;
use registry_client::{Descriptor, Digest};

/// A connection to containerd, in one namespace.
pub(crate) struct Containerd {
    channel: Channel,
    namespace: String,
}

impl Containerd {
    pub(crate) async fn connect(address: &str, namespace: &str) -> Result<Self, String> {
        let channel = containerd_client::connect(address)
            .await
            .map_err(|e| format!("cannot connect to containerd at `{address}`: {e}"))?;
        // The namespace goes into a gRPC header; containerd's own names always fit one.
        if namespace
            .parse::<containerd_client::tonic::metadata::MetadataValue<_>>()
            .is_err()
        {
            return Err(format!(
                "namespace `{}` cannot be sent to containerd",
                namespace.escape_default()
            ));
        }
        Ok(Self {
            channel,
            namespace: namespace.to_owned(),
        })
    }

    /// The container's image: its name and its target (a manifest's or an image index's
    /// descriptor).
    pub(crate) async fn image_of(&self, container: &str) -> Result<(String, Descriptor), String> {
        let mut containers = ContainersClient::new(self.channel.clone());
        let request = GetContainerRequest {
            id: container.to_owned(),
        };
        let image = containers
            .get(with_namespace!(request, self.namespace))
            .await
            .map_err(|e| format!("cannot read container `{container}`: {}", e.message()))?
            .into_inner()
            .container
            .map(|c| c.image)
            .filter(|image| !image.is_empty())
            .ok_or_else(|| format!("container `{container}` names no image"))?;
        let mut images = ImagesClient::new(self.channel.clone());
        let request = GetImageRequest {
            name: image.clone(),
        };
        let target = images
            .get(with_namespace!(request, self.namespace))
            .await
            .map_err(|e| format!("cannot read image `{image}`: {}", e.message()))?
            .into_inner()
            .image
            .and_then(|i| i.target)
            .ok_or_else(|| format!("image `{image}` has no target"))?;
        let digest: Digest = target
            .digest
            .parse()
            .map_err(|e| format!("image `{image}`'s target digest: {e}"))?;
        let descriptor = Descriptor {
            media_type: target.media_type,
            digest,
            size: u64::try_from(target.size).unwrap_or(0),
            artifact_type: None,
            annotations: std::collections::BTreeMap::new(),
            platform: None,
        };
        Ok((image, descriptor))
    }
}

impl broker::ContentSource for Containerd {
    async fn read(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, String> {
        let mut content = ContentClient::new(self.channel.clone());
        let request = ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let mut stream = content
            .read(with_namespace!(request, self.namespace))
            .await
            .map_err(|e| e.message().to_owned())?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(|e| e.message().to_owned())? {
            if (bytes.len() as u64).saturating_add(chunk.data.len() as u64) > limit {
                return Err(format!("it is larger than {limit} bytes"));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        Ok(bytes)
    }
}
