process VALIDATE_INPUT {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(h5ad), path(compounds, stageAs: 'compounds/*')

    output:
    tuple val(meta), path("*.validation.json"), emit: json
    path "versions.yml"                       , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def dataset_args = task.ext.args2 ?: ''  // the samplesheet row's columns (conf/modules.config)
    def prefix = task.ext.prefix ?: "${meta.id}"
    def compound_arg = compounds ? "--compound-table ${compounds}" : ''
    """
    validate_input.py \\
        --h5ad ${h5ad} \\
        ${compound_arg} \\
        ${dataset_args} \\
        --out ${prefix}.validation.json \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    def compound_arg = compounds ? "--compound-table ${compounds}" : ''
    """
    echo '{"stub": true}' > ${prefix}.validation.json
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
