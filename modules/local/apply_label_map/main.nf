/*
 * A dataset whose samplesheet row has a label_map, relabelled by target (guide -> gene): every later
 * step reads this copy, so the cells of one target's guides are one perturbation.
 */
process APPLY_LABEL_MAP {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(h5ad, stageAs: 'input/*'), path(label_map)

    output:
    tuple val(meta), path("*.relabelled.h5ad"), emit: h5ad
    path "versions.yml"                       , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def dataset_args = task.ext.args2 ?: ''  // the samplesheet row's columns (conf/modules.config)
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    apply_label_map.py \\
        --h5ad ${h5ad} \\
        --label-map ${label_map} \\
        ${dataset_args} \\
        --out ${prefix}.relabelled.h5ad \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    cp ${h5ad} ${prefix}.relabelled.h5ad
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
